"""A file written under a hidden name beside its own and renamed into place once whole, so
that a cut transfer leaves no partial file under the real name for CPMCS to pick up."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import PurePath
from typing import Any, Protocol, TypeVar

_Path = TypeVar("_Path", bound=PurePath)


class RemoteFile(Protocol):
    async def write(self, data: bytes, /) -> Any: ...


def partial_name(path: _Path) -> _Path:
    """Where `path` is written until its last byte is in."""
    return path.with_name(f".{path.name}.partial")


async def write_then_rename(
    path: _Path,
    chunks: AsyncIterable[bytes],
    *,
    create: Callable[[_Path], AbstractAsyncContextManager[RemoteFile]],
    rename: Callable[[_Path, _Path], Awaitable[Any]],
    remove: Callable[[_Path], Awaitable[None]],
) -> int:
    """`chunks` written to a file `create` opens under `path`'s partial name, then renamed
    to `path`; the bytes written. Whatever stops it, the partial file is removed and the
    error raises."""
    partial = partial_name(path)
    written = 0
    try:
        async with create(partial) as remote:
            async for chunk in chunks:
                await remote.write(chunk)
                written += len(chunk)
        await rename(partial, path)
    except BaseException:
        await remove(partial)
        raise
    return written
