"""A file store whose every call is reported as an activity of the running instance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from derms_bridge import tracing
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder, StoredFile
from derms_bridge.connectors.http import CallObserver
from derms_bridge.schemas.ops import Activity

#: As much of a path as an activity keeps (store/tables.py ActivityRow.path).
PATH_CHARS = 400


def _path(folder: Folder, name: str | None = None) -> str:
    namespace = f"{folder.namespace}:" if folder.namespace else ""
    return f"{namespace}{folder.path.rstrip('/')}/{name or ''}"


class ObservedStorage:
    """Passes each call to `store` and tells `observer` what it was, how long it took, and
    how it failed; a read is one call, from its first chunk to its last."""

    def __init__(self, store: FileStorage, target: str, observer: CallObserver) -> None:
        self._store = store
        self._target = target
        self._observer = observer
        self.description = store.description

    @contextmanager
    def _observed(self, operation: str, method: str, path: str) -> Iterator[None]:
        started = time.perf_counter()
        error: str | None = None
        try:
            with tracing.span(
                f"{self._target} {operation}",
                kind=tracing.SpanKind.CLIENT,
                attributes={
                    "derms_bridge.target": self._target,
                    "derms_bridge.operation": operation,
                },
                current=False,
            ):
                yield
        except GeneratorExit:
            error = "the reader stopped before the end of the file"
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            self._observer(
                Activity(
                    target=self._target,
                    operation=operation,
                    method=method,
                    path=path[:PATH_CHARS],
                    http_status=None,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    error=error,
                    at=datetime.now(UTC),
                )
            )

    async def list(self, folder: Folder, prefix: str = "") -> list[StoredFile]:
        with self._observed("list", "LIST", _path(folder, f"{prefix}*")):
            return await self._store.list(folder, prefix)

    async def read(self, folder: Folder, name: str) -> AsyncIterator[bytes]:
        with self._observed("read", "GET", _path(folder, name)):
            async for chunk in self._store.read(folder, name):
                yield chunk

    async def write(self, folder: Folder, name: str, chunks: AsyncIterable[bytes]) -> int:
        with self._observed("write", "PUT", _path(folder, name)):
            return await self._store.write(folder, name, chunks)

    async def rename(self, folder: Folder, name: str, new_name: str) -> None:
        with self._observed("rename", "RENAME", f"{_path(folder, name)} -> {new_name}"):
            await self._store.rename(folder, name, new_name)

    async def check(self) -> None:
        with self._observed("check", "CHECK", "/"):
            await self._store.check()
