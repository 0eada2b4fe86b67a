"""SFTP through asyncssh: a password or a private key, and the server's key always checked
against known_hosts or a given key, unless the settings explicitly trust any (a sandbox)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import PurePosixPath
from typing import Any, cast

import asyncssh

from derms_bridge.connectors.file_storage.interface import Folder, StoredFile
from derms_bridge.connectors.file_storage.partial import write_then_rename
from derms_bridge.errors import FileStorageError
from derms_bridge.schemas.file_names import checked_file_name
from derms_bridge.settings.file_storage import SftpSettings

CHUNK_BYTES = 1024 * 1024


def _reason(exc: asyncssh.SFTPError) -> str:
    return exc.reason or type(exc).__name__


class SftpStorage:
    """One SSH connection per operation, like the FTP store: few calls a run, and none
    inherits a session a failed call left behind."""

    def __init__(self, settings: SftpSettings) -> None:
        self._settings = settings
        self.description = f"SFTP {settings.host}:{settings.port}"
        self._options = self._connect_options(settings)

    @staticmethod
    def _connect_options(settings: SftpSettings) -> dict[str, Any]:
        options: dict[str, Any] = {
            "port": settings.port,
            "username": settings.username,
            "connect_timeout": settings.timeout,
            "login_timeout": settings.timeout,
            # Ask nothing of the user's ~/.ssh: the settings say everything there is.
            "agent_path": None,
            "client_keys": None,
            "password": None,
        }
        if settings.password is not None:
            options["password"] = settings.password.get_secret_value()
        if settings.private_key is not None:
            passphrase = settings.private_key_passphrase
            options["client_keys"] = [
                asyncssh.read_private_key(
                    settings.private_key,
                    passphrase.get_secret_value() if passphrase else None,
                )
            ]
        if settings.host_key is not None:
            options["known_hosts"] = ([asyncssh.import_public_key(settings.host_key)], [], [])
        elif settings.known_hosts is not None:
            options["known_hosts"] = str(settings.known_hosts)
        elif settings.accept_unknown_host_key:
            options["known_hosts"] = None
        return options

    def _where(self, folder: Folder, name: str | None = None) -> str:
        place = f"folder {folder.path!r}" if name is None else f"{name!r} in {folder.path!r}"
        return f"{self.description}: {place}"

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[asyncssh.SFTPClient]:
        settings = self._settings
        try:
            connection = await asyncssh.connect(settings.host, **self._options)
        except asyncssh.PermissionDenied:
            raise FileStorageError(
                f"{self.description}: login as {settings.username!r} refused"
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            raise FileStorageError(
                f"{self.description}: the server's host key is not the one known_hosts "
                "or host_key names"
            ) from None
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise FileStorageError(
                f"{self.description}: cannot connect: {str(exc) or type(exc).__name__}"
            ) from None
        async with connection:
            try:
                sftp = await connection.start_sftp_client()
            except asyncssh.Error as exc:
                raise FileStorageError(f"{self.description}: no SFTP service: {exc}") from None
            async with sftp:
                yield sftp

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        async with self._session() as sftp:
            try:
                entries = [entry async for entry in sftp.scandir(folder.path)]
            except asyncssh.SFTPNoSuchFile:
                raise FileStorageError(f"{self._where(folder)} does not exist") from None
            except asyncssh.SFTPError as exc:
                raise FileStorageError(
                    f"{self._where(folder)}: cannot list ({_reason(exc)})"
                ) from None
        return sorted(
            (
                StoredFile(str(entry.filename), entry.attrs.size)
                for entry in entries
                if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
                and str(entry.filename).startswith(prefix)
            ),
            key=lambda stored: stored.name,
        )

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        path = PurePosixPath(folder.path, checked_file_name(name))
        async with self._session() as sftp:
            try:
                async with sftp.open(path, "rb") as remote:
                    # Opened in binary mode, so asyncssh's str-or-bytes read gives bytes.
                    while chunk := cast(bytes, await remote.read(CHUNK_BYTES)):
                        yield chunk
            except asyncssh.SFTPError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot read ({_reason(exc)})"
                ) from None
            except (asyncssh.Error, OSError) as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: transfer broke off: {exc}"
                ) from None

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        path = PurePosixPath(folder.path, checked_file_name(name))
        async with self._session() as sftp:
            try:
                return await write_then_rename(
                    path,
                    chunks,
                    create=lambda partial: sftp.open(partial, "wb"),
                    rename=lambda source, target: sftp.rename(
                        source, target, flags=asyncssh.FXR_OVERWRITE
                    ),
                    remove=lambda partial: self._remove_quietly(sftp, partial),
                )
            except asyncssh.SFTPError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot write ({_reason(exc)})"
                ) from None

    @staticmethod
    async def _remove_quietly(sftp: asyncssh.SFTPClient, path: PurePosixPath) -> None:
        with suppress(asyncssh.Error, OSError):
            await sftp.remove(path)

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        source = PurePosixPath(folder.path, checked_file_name(name))
        target = source.with_name(checked_file_name(new_name))
        async with self._session() as sftp:
            try:
                await sftp.rename(source, target, flags=asyncssh.FXR_OVERWRITE)
            except asyncssh.SFTPError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot rename to {new_name!r} ({_reason(exc)})"
                ) from None

    async def check(self) -> None:
        async with self._session() as sftp:
            await sftp.getcwd()
