"""The sandbox's FTP server and object store, reached through the settings it gives the hub."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.connectors.file_storage.interface import Folder
from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.derms_sim import RetrySetting
from derms_bridge.sandbox.run import (
    SandboxPorts,
    banner,
    prepare_sandbox_files,
    sandbox_settings,
    start_simulators,
)
from tests.conftest import LOOKUPS_DIR
from tests.ports import ports_to_bind


async def test_the_hub_finds_the_device_score_files_in_both_sandbox_stores(
    tmp_path: Path,
) -> None:
    lookups = load_lookups(LOOKUPS_DIR)
    first = ports_to_bind(6)
    ports = SandboxPorts(
        hub=first,
        cpmcs=first + 1,
        derms=first + 2,
        smtp=first + 3,
        ftp=first + 4,
        object_store=first + 5,
    )
    files = prepare_sandbox_files(tmp_path, lookups)
    settings = sandbox_settings(ports, f"sqlite:///{tmp_path / 'hub.db'}", LOOKUPS_DIR, files)
    simulators = start_simulators(ports, files, Console(quiet=True), RetrySetting())
    try:
        ftp = open_storage(settings.file_stores.ftp)
        object_storage = open_storage(settings.file_stores.object_storage)
        prefix = lookups.prop("dacs.dvcScore.extract.filename.prefix")
        in_ftp = await ftp.list(Folder(lookups.prop("dacs.dvcScore.ftp.input.directory")), prefix)
        bucket = Folder(
            lookups.prop("dacs.os.dvcScore.bucketname"), lookups.prop("dacs.os.namespace")
        )
        in_bucket = await object_storage.list(bucket, prefix)
        assert await ftp.list(Folder(lookups.prop("dacs.spNtwkLoc.ftp.input.directory"))) == []
        network_bucket = Folder(
            lookups.prop("dacs.spNtwkLoc.os.bucketname"), lookups.prop("dacs.os.namespace")
        )
        assert await object_storage.list(network_bucket) == []
    finally:
        simulators.stop()

    assert [f.name for f in in_ftp] == list(files.device_score_files)
    assert [f.name for f in in_bucket] == list(files.device_score_files)
    assert all(f.size and f.size > 1000 for f in in_ftp + in_bucket)
    text = banner(ports, settings.database.url.get_secret_value(), files, LOOKUPS_DIR)
    assert f"ftp://127.0.0.1:{ports.ftp_port}" in text
    assert all(name in text for name in files.device_score_files)
