"""Every file store adapter, against a real server on 127.0.0.1, behaves the same way."""

from __future__ import annotations

import hashlib
import os
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from pydantic import SecretStr

from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder
from derms_bridge.errors import BadFileName, FileStorageError
from derms_bridge.settings import SettingsError, load_settings
from derms_bridge.settings.file_storage import OciObjectStorageSettings, SftpSettings
from tests.integration.connectors.conftest import SftpServer, StoreUnderTest
from tests.stores import PASSWORD, USER, WRONG_PASSWORD

MB = 1024 * 1024
NON_ASCII = "SDCSE Zürich ü.csv"


class CutTransfer(Exception):
    """The source of a write broke off in the middle."""


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(storage: FileStorage, folder: Folder, name: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(folder, name)])


async def names_in(store: StoreUnderTest) -> list[str]:
    return [stored.name for stored in await store.storage.list(store.folder)]


async def test_list_gives_the_files_with_the_prefix_by_name(store: StoreUnderTest) -> None:
    for name in ["SDCSE_3.csv", "other.csv", "SDCSE_1.csv", "SDCSE_2.csv"]:
        await store.storage.write(store.folder, name, chunks_of(name.encode() * 10))
    store.add_subfolder("SDCSE_folder")

    listed = await store.storage.list(store.folder, "SDCSE")

    assert [stored.name for stored in listed] == ["SDCSE_1.csv", "SDCSE_2.csv", "SDCSE_3.csv"]
    assert [stored.size for stored in listed] == [110, 110, 110]
    assert len(await store.storage.list(store.folder)) == 4


async def test_a_large_file_goes_in_and_out_in_chunks_byte_for_byte(
    store: StoreUnderTest,
) -> None:
    data = os.urandom(MB) * 64
    size = len(data)

    async def produced() -> AsyncIterator[bytes]:
        # Made as it is asked for, so that only what the adapter holds is in memory.
        for start in range(0, size, 256 * 1024):
            yield data[start : start + 256 * 1024]

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        written = await store.storage.write(store.folder, "SDCSE_big.csv", produced())
        digest = hashlib.sha256()
        chunks = 0
        async for chunk in store.storage.read(store.folder, "SDCSE_big.csv"):
            digest.update(chunk)
            chunks += 1
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert written == size
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert chunks > 1, "the file arrived in one piece, not streamed"
    assert peak < size / 2, f"{store.kind} held {peak / MB:.0f} MB for a {size / MB:.0f} MB file"


async def test_rename_moves_the_file_to_its_new_name(store: StoreUnderTest) -> None:
    await store.storage.write(store.folder, "SDCSE_1.csv", chunks_of(b"a,b\n1,2\n"))

    await store.storage.rename(store.folder, "SDCSE_1.csv", "Sent-SDCSE_1.csv")

    assert await names_in(store) == ["Sent-SDCSE_1.csv"]
    assert await read_all(store.storage, store.folder, "Sent-SDCSE_1.csv") == b"a,b\n1,2\n"


async def test_names_with_spaces_and_non_ascii_letters_work(store: StoreUnderTest) -> None:
    content = "nicId,score\nNIC-ü,0.9\n".encode()
    await store.storage.write(store.folder, NON_ASCII, chunks_of(content))

    assert [s.name for s in await store.storage.list(store.folder, "SDCSE Zü")] == [NON_ASCII]
    assert await read_all(store.storage, store.folder, NON_ASCII) == content
    await store.storage.rename(store.folder, NON_ASCII, f"Sent-{NON_ASCII}")
    assert await names_in(store) == [f"Sent-{NON_ASCII}"]


async def test_a_write_replaces_a_file_of_the_same_name(store: StoreUnderTest) -> None:
    await store.storage.write(store.folder, "SDCSE_1.csv", chunks_of(b"old"))
    await store.storage.write(store.folder, "SDCSE_1.csv", chunks_of(b"new"))

    assert await names_in(store) == ["SDCSE_1.csv"]
    assert await read_all(store.storage, store.folder, "SDCSE_1.csv") == b"new"


@pytest.mark.parametrize("bad_name", ["../x", "a/b", "a\x00b", ".."])
async def test_bad_names_are_refused_before_the_store_is_called(
    store: StoreUnderTest, bad_name: str
) -> None:
    # Against a store that refuses the login and a folder that does not exist: any call
    # would end in FileStorageError, so BadFileName shows that none was made.
    storage = store.refused or store.storage
    folder = store.missing_folder

    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the chunks of a badly named file were read")
        yield b""  # pragma: no cover

    with pytest.raises(BadFileName):
        await anext(storage.read(folder, bad_name))
    with pytest.raises(BadFileName):
        await storage.write(folder, bad_name, never())
    with pytest.raises(BadFileName):
        await storage.rename(folder, bad_name, "fine.csv")
    with pytest.raises(BadFileName):
        await storage.rename(folder, "fine.csv", bad_name)


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    store: StoreUnderTest,
) -> None:
    if store.refused is None:
        pytest.skip("a local folder has no login")

    with pytest.raises(FileStorageError) as raised:
        await store.refused.list(store.folder)

    message = str(raised.value)
    assert store.refused.description in message
    assert "refused" in message
    assert WRONG_PASSWORD not in message
    assert PASSWORD not in message


async def test_a_missing_folder_is_a_clear_error(store: StoreUnderTest) -> None:
    with pytest.raises(FileStorageError) as raised:
        await store.storage.list(store.missing_folder)

    message = str(raised.value)
    assert store.storage.description in message
    assert store.missing_folder.path in message
    assert "does not exist" in message


async def test_a_missing_file_is_a_clear_error(store: StoreUnderTest) -> None:
    with pytest.raises(FileStorageError, match=r"SDCSE_none\.csv"):
        await read_all(store.storage, store.folder, "SDCSE_none.csv")
    with pytest.raises(FileStorageError, match=r"SDCSE_none\.csv"):
        await store.storage.rename(store.folder, "SDCSE_none.csv", "Sent-SDCSE_none.csv")


async def test_a_transfer_cut_in_the_middle_leaves_no_file(store: StoreUnderTest) -> None:
    async def cut_after_three_mb() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MB)
        raise CutTransfer("the sender went away")

    with pytest.raises(CutTransfer):
        await store.storage.write(store.folder, "SDCSE_cut.csv", cut_after_three_mb())

    assert await names_in(store) == []


async def test_a_cut_transfer_keeps_the_file_it_would_have_replaced(
    store: StoreUnderTest,
) -> None:
    await store.storage.write(store.folder, "SDCSE_1.csv", chunks_of(b"whole"))

    async def cut() -> AsyncIterator[bytes]:
        yield b"part"
        raise CutTransfer("the sender went away")

    with pytest.raises(CutTransfer):
        await store.storage.write(store.folder, "SDCSE_1.csv", cut())

    assert await names_in(store) == ["SDCSE_1.csv"]
    assert await read_all(store.storage, store.folder, "SDCSE_1.csv") == b"whole"


async def test_check_logs_in(store: StoreUnderTest) -> None:
    await store.storage.check()
    if store.refused is not None:
        with pytest.raises(FileStorageError):
            await store.refused.check()


async def test_sftp_refuses_a_server_whose_key_is_not_the_known_one(
    sftp_server: SftpServer,
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    storage = open_storage(
        SftpSettings(
            host="127.0.0.1",
            port=sftp_server.port,
            username=USER,
            password=SecretStr(PASSWORD),
            host_key=impostor,
        )
    )

    with pytest.raises(FileStorageError, match="host key"):
        await storage.list(Folder("/"))


async def test_sftp_takes_any_host_key_only_when_told_to(sftp_server: SftpServer) -> None:
    def storage(accept: bool) -> FileStorage:
        return open_storage(
            SftpSettings(
                host="127.0.0.1",
                port=sftp_server.port,
                username=USER,
                password=SecretStr(PASSWORD),
                known_hosts=sftp_server.known_hosts_file.with_name("empty_known_hosts"),
                accept_unknown_host_key=accept,
            )
            if not accept
            else SftpSettings(
                host="127.0.0.1",
                port=sftp_server.port,
                username=USER,
                password=SecretStr(PASSWORD),
                accept_unknown_host_key=True,
            )
        )

    sftp_server.known_hosts_file.with_name("empty_known_hosts").write_text("")
    with pytest.raises(FileStorageError, match="host key"):
        await storage(accept=False).list(Folder("/"))
    assert await storage(accept=True).list(Folder("/")) == []


def test_oci_configured_without_the_sdk_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text("not read")
    monkeypatch.setitem(sys.modules, "oci", None)

    with pytest.raises(FileStorageError, match=r"pip install 'derms-bridge\[oci\]'"):
        open_storage(
            OciObjectStorageSettings(
                region="us-ashburn-1",
                tenancy="t",
                user="u",
                fingerprint="f",
                key_file=key_file,
            )
        )


def test_a_file_store_setting_error_names_its_line_and_field(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        "connections:\n"
        "  cpmcs: {base_url: 'http://127.0.0.1:1'}\n"
        "  derms: {default: {base_url: 'http://127.0.0.1:2'}}\n"
        "file_stores:\n"
        "  ftp:\n"
        "    type: sftp\n"
        "    host: ftp.utility.example\n"
        "    port: 70000\n"
        "    username: cpmcs\n"
        "  object_storage:\n"
        "    type: s3\n"
        "    access_key_id: AKIA\n"
        "    secret_access_key: hidden-secret-value\n"
        "    path_style: maybe\n"
    )

    with pytest.raises(SettingsError) as raised:
        load_settings(settings_file)

    problems = raised.value.problems
    assert any(f"{settings_file}:8: file_stores.ftp.port:" in p for p in problems), problems
    assert any(
        f"{settings_file}:14: file_stores.object_storage.path_style:" in p for p in problems
    ), problems
    assert not any("hidden-secret-value" in p for p in problems)
