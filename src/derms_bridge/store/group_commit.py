"""Writes that many flows make at the same moment, committed together.

A flow writes its instance before it calls anyone and its outcome before it answers. Under a
burst, hundreds of those writes wait at once; each in a transaction of its own took the event
loop several trips to the database's thread and back, and SQLite one commit each, one writer
at a time. Here the writes that arrive while a transaction is under way wait for the next one,
and go in it together (on SQLite in one call off the event loop, on PostgreSQL in one round
trip): a writer is answered only once the transaction that holds its write has committed,
so nothing is acknowledged that a crash could lose. A write that fails its shared
transaction is run again alone, so that one bad write fails only its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

_W = TypeVar("_W")
#: Commits works in one transaction of their own, and gives their results in their order:
#: what a work is, and how works are merged, is the caller's (store/instance_writes.py runs
#: each statement once for all of them).
CommitTogether = Callable[[Sequence[_W]], Awaitable[list[Any]]]


#: Writes in one transaction at most: a flow's two writes are a few rows each, and a bound
#: keeps one transaction's time (and a failed one's replay) short.
MOST_IN_ONE_COMMIT = 256


class GroupCommit(Generic[_W]):
    def __init__(self, commit: CommitTogether[_W], *, most: int = MOST_IN_ONE_COMMIT) -> None:
        self._commit_together = commit
        self._most = most
        self._waiting: list[tuple[_W, asyncio.Future[Any]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def write(self, work: _W) -> Any:
        """`work`'s result once the transaction holding it has committed; its exception if it
        failed, alone."""
        written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, written))
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_while_waiting())
        return await written

    async def _commit_while_waiting(self) -> None:
        batch: list[tuple[_W, asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._most]
                del self._waiting[: self._most]
                await self._commit(batch)
        except BaseException:
            # Stopped (the hub's loop ending): no writer is left waiting for an answer.
            for _, written in [*batch, *self._waiting]:
                written.cancel()
            self._waiting.clear()
            raise
        finally:
            self._committing = None

    async def _commit(self, batch: list[tuple[_W, asyncio.Future[Any]]]) -> None:
        works = [work for work, _ in batch]
        try:
            results = await self._commit_together(works)
        except Exception:
            for work, written in batch:
                await self._alone(work, written)
            return
        for (_, written), result in zip(batch, results, strict=True):
            if not written.done():
                written.set_result(result)

    async def _alone(self, work: _W, written: asyncio.Future[Any]) -> None:
        try:
            [result] = await self._commit_together([work])
        except Exception as exc:
            if not written.done():
                written.set_exception(exc)
            return
        if not written.done():
            written.set_result(result)
