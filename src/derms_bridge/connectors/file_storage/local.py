"""A folder on the hub's own disk standing in for a file store (the default, and the sandbox's)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from derms_bridge.connectors.file_storage.interface import Folder, StoredFile
from derms_bridge.connectors.file_storage.partial import partial_name
from derms_bridge.errors import FileStorageError
from derms_bridge.schemas.file_names import checked_file_name

CHUNK_BYTES = 1024 * 1024


class LocalFolderStorage:
    """Folders under one root; an object storage namespace is one more level of folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"local folder {root}"

    def _folder(self, folder: Folder) -> Path:
        parts = [part for part in folder.path.split("/") if part]
        if folder.namespace:
            parts.insert(0, folder.namespace)
        for part in parts:
            checked_file_name(part)
        return self.root.joinpath(*parts)

    def _existing_folder(self, folder: Folder) -> Path:
        path = self._folder(folder)
        if not path.is_dir():
            raise FileStorageError(f"{self.description}: folder {folder.path!r} does not exist")
        return path

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        path = self._existing_folder(folder)
        return sorted(
            (
                StoredFile(entry.name, entry.stat().st_size)
                for entry in path.iterdir()
                if entry.is_file() and entry.name.startswith(prefix)
            ),
            key=lambda stored: stored.name,
        )

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        checked_file_name(name)
        path = self._existing_folder(folder) / name
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except OSError as exc:
            raise FileStorageError(f"{self.description}: cannot read {name!r}: {exc}") from exc
        with handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        checked_file_name(name)
        target = self._existing_folder(folder) / name
        # Written beside the target and renamed into place, as the remote stores do.
        partial = partial_name(target)
        written = 0
        try:
            with partial.open("wb") as handle:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        checked_file_name(name)
        checked_file_name(new_name)
        path = self._existing_folder(folder)
        source, target = path / name, path / new_name
        if not source.is_file():
            raise FileStorageError(f"{self.description}: no file {name!r} to rename")
        os.replace(source, target)

    async def check(self) -> None:
        if not self.root.is_dir():
            raise FileStorageError(f"{self.description} does not exist")
