"""The vocabulary of CPMCS's file storage, which every adapter here speaks and the
flows are written against: folders, stored files, the FileStorage protocol, and the
storages by role."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from derms_bridge.errors import FileStorageError


@dataclass(frozen=True)
class Folder:
    """Where files live in a store: a directory (FTP, SFTP, a local folder) or a bucket,
    in a namespace for OCI Object Storage (ConfigProps dacs.os.namespace)."""

    path: str
    namespace: str | None = None


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int | None = None


class FileStorage(Protocol):
    """One of CPMCS's file stores. Every method streams: no file is ever held whole.

    Failures raise FileStorageError naming the store, the folder and the file;
    names are checked with file_names.checked_file_name before any call.
    """

    #: Where the store is, for messages and the console: "FTP 127.0.0.1:2121", never a secret.
    description: str

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        """The files (not directories) of the folder whose names begin with prefix, by name."""
        ...

    def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        """The file's bytes, in chunks, as they arrive."""
        ...

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the chunks as the file (replacing one of that name); the bytes written.

        A write cut short leaves no file of that name behind where the store allows it.
        """
        ...

    async def rename(self, folder: Folder, name: str, new_name: str) -> None: ...

    async def check(self) -> None:
        """Reach the store and log in (for the console's connections page)."""
        ...


class UnconfiguredStorage:
    """The store of a role that the settings give none: every call says so."""

    def __init__(self, role: str) -> None:
        self.description = f"{role} store (not configured)"
        self._role = role

    def _refuse(self) -> FileStorageError:
        return FileStorageError(f"no {self._role} store is configured in the settings")

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        raise self._refuse()

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        raise self._refuse()
        yield b""  # pragma: no cover - makes this an async generator, as the protocol reads

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        raise self._refuse()

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        raise self._refuse()

    async def check(self) -> None:
        raise self._refuse()


@dataclass(frozen=True)
class FileStorages:
    """CPMCS's file stores by role: its on-premises FTP (or SFTP) server and its object storage."""

    ftp: FileStorage = field(default_factory=lambda: UnconfiguredStorage("ftp"))
    object_storage: FileStorage = field(
        default_factory=lambda: UnconfiguredStorage("object storage")
    )
