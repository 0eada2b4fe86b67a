"""A file store whose every call is an activity of the running instance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import contextmanager

from derms_bridge.flows.ports import FileStorage, FileStores, Folder, StoredFile
from derms_bridge.store.instances import NewActivity, utcnow

Record = Callable[[NewActivity], None]


def _where(folder: Folder, name: str = "") -> str:
    parts = [folder.namespace or "", folder.path.rstrip("/"), name]
    return "/".join(part for part in parts if part)[:400]


class ObservedStorage:
    def __init__(self, store: FileStorage, target: str, record: Record) -> None:
        self._store = store
        self._target = target
        self._record = record
        self.description = store.description

    @contextmanager
    def _call(self, operation: str, path: str) -> Iterator[None]:
        started = time.perf_counter()
        error: str | None = None
        try:
            yield
        except GeneratorExit:
            # The reader stopped taking chunks: not the store's failure.
            raise
        except BaseException as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            self._record(
                NewActivity(
                    target=self._target,
                    operation=operation,
                    method=None,
                    path=path,
                    http_status=None,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    error=error,
                    at=utcnow(),
                )
            )

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        with self._call("list", _where(folder, f"{prefix}*")):
            return await self._store.list(folder, prefix)

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        with self._call("read", _where(folder, name)):
            async for chunk in self._store.read(folder, name):
                yield chunk

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        with self._call("write", _where(folder, name)):
            return await self._store.write(folder, name, chunks)

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        with self._call("rename", _where(folder, f"{name} -> {new_name}")):
            await self._store.rename(folder, name, new_name)

    async def check(self) -> None:
        with self._call("check", ""):
            await self._store.check()


def observed(stores: FileStores, record: Record) -> FileStores:
    return FileStores(
        ftp=ObservedStorage(stores.ftp, "FTP", record),
        object_storage=ObservedStorage(stores.object_storage, "object storage", record),
    )
