"""Flows 16 and 17 over real stores: a pyftpdlib server and the sandbox's OCI-speaking object
store through the oci SDK, with the DERMS simulator and the SMTP sink. What an operator sees
when a store refuses the login, a folder or bucket is missing, a download breaks off
mid-file or DERMS is down: an errored instance saying why, the error email, and no file
renamed as sent that DERMS did not take whole."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pydantic import SecretStr
from pyftpdlib.handlers import DTPHandler

from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.servers import LOOPBACK
from derms_bridge.sandbox.smtp_sink import ReceivedMail, SmtpSink
from derms_bridge.settings.file_storage import (
    FileStorageSettings,
    FtpSettings,
    OciObjectStorageSettings,
)
from tests.conftest import OPERATOR_AUTH, HubUnderTest, derms_received, serving
from tests.stores import (
    DERMS_DOWN,
    NAMESPACE,
    OCI_USER,
    PASSWORD,
    TENANCY,
    USER,
    WRONG_PASSWORD,
    OciServer,
)

#: Where the cutting FTP server drops the data connection of a download.
CUT_AFTER = 256 * 1024
UNKNOWN_FINGERPRINT = ":".join(["00"] * 16)
ACCENTED = "SDCSE relevé Łódź n°1.csv"


@dataclass
class Source:
    """One real store as flow 16 (ftp) or 17 (oci) reads it, and as the test fills it."""

    kind: str
    flow: str
    #: Where the store keeps the flow's folder (or bucket) on disk.
    path: Path
    #: The ConfigProps rows that point the flow at that folder.
    props: dict[str, str]

    def put(self, name: str, data: bytes) -> None:
        # The object store escapes "%" and "/" in its file names; these names hold neither.
        (self.path / name).write_bytes(data)

    def names(self) -> list[str]:
        return sorted(unquote(path.name) for path in self.path.iterdir())


def ftp_source(root: Path) -> Source:
    folder = f"/device-score-{uuid.uuid4().hex[:8]}"
    (root / folder.strip("/")).mkdir()
    return Source(
        "ftp",
        "device_score_ftp",
        root / folder.strip("/"),
        {"dacs.dvcScore.ftp.input.directory": folder},
    )


def oci_source(server: OciServer) -> Source:
    bucket = f"device-score-{uuid.uuid4().hex[:8]}"
    return Source(
        "oci",
        "device_score_os",
        server.files.create_bucket(NAMESPACE, bucket),
        {"dacs.os.namespace": NAMESPACE, "dacs.os.dvcScore.bucketname": bucket},
    )


def ftp_store(server: FtpServer, password: str = PASSWORD) -> FtpSettings:
    return FtpSettings(
        host=LOOPBACK, port=server.port, username=USER, password=SecretStr(password), timeout=10
    )


def oci_store(server: OciServer, fingerprint: str | None = None) -> OciObjectStorageSettings:
    return OciObjectStorageSettings(
        region="us-ashburn-1",
        tenancy=TENANCY,
        user=OCI_USER,
        fingerprint=fingerprint or server.fingerprint,
        key_file=server.key_file,
        endpoint=server.url,
    )


def with_props(lookups: Lookups, props: dict[str, str]) -> Lookups:
    config = lookups.tables["ConfigProps"]
    rows = {**config.rows, **props}
    return Lookups(tables={**lookups.tables, "ConfigProps": dataclasses.replace(config, rows=rows)})


@asynccontextmanager
async def hub_over(
    hub: HubUnderTest, source: Source, ftp: FtpSettings, oci: OciObjectStorageSettings
) -> AsyncIterator[HubUnderTest]:
    """The hub fixture's settings and database, with its file stores the real servers (as
    `file_stores:` in a settings file gives them) and ConfigProps pointing at `source`."""
    settings = hub.settings.model_copy(
        update={"file_stores": FileStorageSettings(ftp=ftp, object_storage=oci)}
    )
    lookups = with_props(hub.hub.lookups.current, source.props)
    async with serving(build_hub(settings, lookups)) as over_stores:
        yield over_stores


@pytest.fixture(params=["ftp", "oci"])
def source(request: pytest.FixtureRequest, ftp_server: FtpServer, oci_server: OciServer) -> Source:
    if request.param == "ftp":
        return ftp_source(ftp_server.root)
    return oci_source(oci_server)


@asynccontextmanager
async def real_stores(
    hub: HubUnderTest,
    source: Source,
    ftp_server: FtpServer,
    oci_server: OciServer,
    *,
    refused: bool = False,
) -> AsyncIterator[HubUnderTest]:
    """The hub over both real stores; with `refused`, logged in with a wrong password (FTP)
    or a key the object store does not know."""
    ftp = ftp_store(ftp_server, WRONG_PASSWORD if refused else PASSWORD)
    oci = oci_store(oci_server, UNKNOWN_FINGERPRINT if refused else None)
    async with hub_over(hub, source, ftp, oci) as over_stores:
        yield over_stores


async def run(hub: HubUnderTest, flow: str) -> dict[str, Any]:
    """Start the flow as an operator would, wait for it, and read its instance."""
    started = await hub.client.post(f"/ops/schedules/{flow}/run", auth=OPERATOR_AUTH)
    assert started.status_code == 202, started.text
    instance_id = started.json()["instanceId"]
    await hub.hub.scheduler.finished(instance_id)
    return await hub.detail(instance_id)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def error_mails(mails: list[ReceivedMail]) -> list[ReceivedMail]:
    return [mail for mail in mails if " error: " in mail.subject]


def nothing_secret_in(instance: dict[str, Any], mails: list[ReceivedMail]) -> None:
    shown = [str(instance["error"]), str(instance["reply"])]
    shown += [mail.subject + mail.body_text for mail in mails]
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert not any(secret in text for text in shown), secret


async def test_files_cross_the_real_store_and_are_renamed_sent(
    hub: HubUnderTest,
    source: Source,
    ftp_server: FtpServer,
    oci_server: OciServer,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    first, accented = b"nicId,score\nN-1,87\n", b"nicId,score\n" + b"N-2,55\n" * 300_000
    source.put("SDCSE_20261126_1.csv", first)
    source.put(ACCENTED, accented)
    source.put("README.txt", b"not a device score file")

    async with real_stores(hub, source, ftp_server, oci_server) as over_stores:
        instance = await run(over_stores, source.flow)

    assert instance["status"] == "succeeded", instance["error"]
    # In the order of their names: " " sorts before "_".
    assert derms_received(derms_sim, "/device-score") == [
        {
            "fileName": ACCENTED,
            "contentType": "application/octet-stream",
            "size": len(accented),
            "sha256": sha256(accented),
        },
        {
            "fileName": "SDCSE_20261126_1.csv",
            "contentType": "application/octet-stream",
            "size": len(first),
            "sha256": sha256(first),
        },
    ]
    assert source.names() == ["README.txt", f"Sent-{ACCENTED}", "Sent-SDCSE_20261126_1.csv"]
    [mail] = mailbox.wait_for(1)
    assert "complete: 2 sent, 0 not sent" in mail.subject


async def test_a_store_refusing_the_login_errs_and_leaves_the_files(
    hub: HubUnderTest,
    source: Source,
    ftp_server: FtpServer,
    oci_server: OciServer,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    source.put("SDCSE_1.csv", b"scores")

    async with real_stores(hub, source, ftp_server, oci_server, refused=True) as over_stores:
        instance = await run(over_stores, source.flow)

    assert instance["status"] == "failed"
    assert instance["error"].startswith("cannot list the device score files in ")
    if source.kind == "ftp":
        assert (
            f"FTP {LOOPBACK}:{ftp_server.port}: login as 'cpmcs' refused (530"
            in (instance["error"])
        )
    else:
        assert (
            f"bucket {source.path.name!r} of namespace 'cpmcs': the API signing key was "
            in (instance["error"])
        )
    [mail] = error_mails(mailbox.wait_for(1))
    assert instance["error"] in mail.body_text
    nothing_secret_in(instance, [mail])
    assert source.names() == ["SDCSE_1.csv"]
    assert derms_received(derms_sim, "/device-score") == []


async def test_a_missing_folder_or_bucket_errs(
    hub: HubUnderTest,
    source: Source,
    ftp_server: FtpServer,
    oci_server: OciServer,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    missing = {key: f"{value}-missing" for key, value in source.props.items()}
    missing.pop("dacs.os.namespace", None)
    gone = dataclasses.replace(source, props={**source.props, **missing})

    async with real_stores(hub, gone, ftp_server, oci_server) as over_stores:
        instance = await run(over_stores, source.flow)

    assert instance["status"] == "failed"
    [folder] = missing.values()
    assert instance["error"].startswith(f"cannot list the device score files in {folder}")
    if source.kind == "ftp":
        assert f"folder {folder!r} does not exist" in instance["error"]
    else:
        assert f"bucket {folder!r} of namespace 'cpmcs' does not exist" in instance["error"]
    [mail] = error_mails(mailbox.wait_for(1))
    assert instance["error"] in mail.body_text
    nothing_secret_in(instance, [mail])
    assert derms_received(derms_sim, "/device-score") == []


async def test_derms_down_renames_no_file_sent(
    hub: HubUnderTest,
    source: Source,
    ftp_server: FtpServer,
    oci_server: OciServer,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    source.put("SDCSE_1.csv", b"one" * 100_000)
    source.put("SDCSE_2.csv", b"two")
    derms_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    async with real_stores(hub, source, ftp_server, oci_server) as over_stores:
        instance = await run(over_stores, source.flow)

    assert instance["status"] == "failed"
    assert source.names() == ["Error-SDCSE_1.csv", "Error-SDCSE_2.csv"]
    assert [failed["fileName"] for failed in instance["reply"]["notSent"]] == [
        "SDCSE_1.csv",
        "SDCSE_2.csv",
    ]
    for failed in instance["reply"]["notSent"]:
        assert failed["reason"].startswith(DERMS_DOWN), failed["reason"]
    mails = mailbox.wait_for(3)
    assert len(error_mails(mails)) == 2
    assert any("complete: 0 sent, 2 not sent" in mail.subject for mail in mails)
    nothing_secret_in(instance, mails)


class CutMidFile(DTPHandler):  # type: ignore[misc]  # pyftpdlib is untyped
    """A data channel that sends the first CUT_AFTER bytes of a download, then drops the
    connection, as a server that crashed or a network that broke would."""

    def send(self, data: bytes) -> int:
        left = CUT_AFTER - self.tot_bytes_sent
        if left <= 0:
            self.handle_close()
            return 0
        sent: int = super().send(data[:left])
        return sent


@pytest.fixture
def cutting_ftp_server(tmp_path: Path) -> Iterator[FtpServer]:
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpServer(root, USER, PASSWORD, data_handler=CutMidFile) as server:
        yield server


async def test_a_download_cut_mid_file_is_not_renamed_sent(
    hub: HubUnderTest,
    cutting_ftp_server: FtpServer,
    oci_server: OciServer,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    source = ftp_source(cutting_ftp_server.root)
    source.put("SDCSE_whole.csv", b"short file")
    source.put("SDCSE_cut.csv", b"nicId,score\n" + b"N-1,42\n" * 600_000)

    ftp, oci = ftp_store(cutting_ftp_server), oci_store(oci_server)
    async with hub_over(hub, source, ftp, oci) as over_stores:
        instance = await run(over_stores, source.flow)

    assert instance["status"] == "failed"
    assert source.names() == ["Error-SDCSE_cut.csv", "Sent-SDCSE_whole.csv"]
    [failed] = instance["reply"]["notSent"]
    assert failed["fileName"] == "SDCSE_cut.csv"
    assert failed["reason"].startswith("reading the file failed part-way: ")
    assert "426" in failed["reason"]
    # DERMS never had a whole body for the cut file: only the short one arrived.
    assert [r["fileName"] for r in derms_received(derms_sim, "/device-score")] == [
        "SDCSE_whole.csv"
    ]
    mails = mailbox.wait_for(2)
    [error_mail] = error_mails(mails)
    assert "device score file 'SDCSE_cut.csv' not sent: reading the file failed part-way" in (
        error_mail.body_text
    )
    nothing_secret_in(instance, mails)
