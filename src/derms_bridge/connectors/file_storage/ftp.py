"""FTP, plain or explicit FTPS (AUTH TLS, PBSZ 0, PROT P), passive mode, through aioftp.

aioftp is asyncio-native and does explicit TLS on both channels, reusing the control
channel's TLS session for each data connection as strict servers require, so no
thread bridges ftplib's blocking calls to the event loop.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import PurePosixPath

import aioftp

from derms_bridge.connectors.file_storage.interface import Folder, StoredFile
from derms_bridge.connectors.file_storage.partial import write_then_rename
from derms_bridge.errors import FileStorageError
from derms_bridge.schemas.file_names import checked_file_name
from derms_bridge.settings.file_storage import FtpSettings

CHUNK_BYTES = 1024 * 1024


def _server_says(exc: aioftp.StatusCodeError) -> str:
    codes = ", ".join(str(code) for code in exc.received_codes)
    info = " ".join(line.strip() for line in exc.info if isinstance(line, str)).strip()
    return f"{codes} {info}".strip()


def _is_not_found(exc: aioftp.StatusCodeError) -> bool:
    return any(code.matches("55x") for code in exc.received_codes)


class FtpStorage:
    """One login per operation: the flows make a handful of calls a run, and a fresh
    session can never be left in a half-finished transfer by the previous call."""

    def __init__(self, settings: FtpSettings) -> None:
        self._settings = settings
        kind = "FTPS" if settings.tls else "FTP"
        self.description = f"{kind} {settings.host}:{settings.port}"
        self._tls_context: ssl.SSLContext | None = None
        if settings.tls:
            self._tls_context = ssl.create_default_context(
                cafile=str(settings.ca_bundle) if settings.ca_bundle else None
            )

    def _where(self, folder: Folder, name: str | None = None) -> str:
        place = f"folder {folder.path!r}" if name is None else f"{name!r} in {folder.path!r}"
        return f"{self.description}: {place}"

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aioftp.Client]:
        settings = self._settings
        client = aioftp.Client(
            socket_timeout=settings.timeout,
            connection_timeout=settings.timeout,
            encoding="utf-8",
        )
        try:
            await client.connect(settings.host, settings.port)
            if self._tls_context is not None:
                await client.upgrade_to_tls(self._tls_context)
            # RFC 2640: servers that default to another encoding switch to UTF-8; the
            # others answer 5xx, and names are UTF-8 there anyway.
            await client.command("OPTS UTF8 ON", ("2xx", "5xx"))
            await client.login(settings.username, settings.password.get_secret_value())
        except aioftp.StatusCodeError as exc:
            client.close()
            if any(code.matches("530") for code in exc.received_codes):
                raise FileStorageError(
                    f"{self.description}: login as {settings.username!r} refused "
                    f"({_server_says(exc)})"
                ) from None
            raise FileStorageError(
                f"{self.description}: session refused ({_server_says(exc)})"
            ) from None
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            client.close()
            raise FileStorageError(
                f"{self.description}: cannot connect: {str(exc) or type(exc).__name__}"
            ) from None
        try:
            yield client
        finally:
            client.close()

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        found = []
        async with self._session() as client:
            try:
                async for path, info in client.list(folder.path):
                    name = PurePosixPath(path).name
                    if info.get("type") == "file" and name.startswith(prefix):
                        size = info.get("size")
                        found.append(StoredFile(name, int(size) if size is not None else None))
            except aioftp.StatusCodeError as exc:
                if _is_not_found(exc):
                    raise FileStorageError(f"{self._where(folder)} does not exist") from None
                raise FileStorageError(
                    f"{self._where(folder)}: cannot list ({_server_says(exc)})"
                ) from None
        return sorted(found, key=lambda stored: stored.name)

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        path = PurePosixPath(folder.path, checked_file_name(name))
        async with self._session() as client:
            try:
                async with client.download_stream(path) as stream:
                    async for block in stream.iter_by_block(CHUNK_BYTES):
                        yield block
            except aioftp.StatusCodeError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot read ({_server_says(exc)})"
                ) from None
            except (OSError, TimeoutError) as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: transfer broke off: {exc}"
                ) from None

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        path = PurePosixPath(folder.path, checked_file_name(name))
        async with self._session() as client:
            try:
                return await write_then_rename(
                    path,
                    chunks,
                    create=client.upload_stream,
                    rename=client.rename,
                    remove=self._remove_quietly,
                )
            except aioftp.StatusCodeError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot write ({_server_says(exc)})"
                ) from None
            except (OSError, TimeoutError) as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: transfer broke off: {exc}"
                ) from None

    async def _remove_quietly(self, path: PurePosixPath) -> None:
        """Removes a partial upload in a session of its own: the one that was writing it
        may have been left mid-transfer."""
        with suppress(FileStorageError, aioftp.StatusCodeError, OSError, TimeoutError):
            async with self._session() as client:
                await client.remove_file(path)

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        source = PurePosixPath(folder.path, checked_file_name(name))
        target = source.with_name(checked_file_name(new_name))
        async with self._session() as client:
            try:
                await client.rename(source, target)
            except aioftp.StatusCodeError as exc:
                raise FileStorageError(
                    f"{self._where(folder, name)}: cannot rename to {new_name!r} "
                    f"({_server_says(exc)})"
                ) from None

    async def check(self) -> None:
        async with self._session() as client:
            await client.get_current_directory()
