"""The hub's work beside its requests: loops that run until they are told to stop (the
workers, the scheduler, the heartbeat), a process's shutdown that stops them, and a lease
renewed while a piece of work runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class CutShort(Exception):
    """A shutdown's grace ended before the work did: it was cancelled."""


class Shutdown:
    """A hub process's stop (SIGTERM, SIGINT, or its server shutting down). From `begin`
    its workers claim nothing more and give back what they claimed ahead; the calls they
    have in flight get `grace_seconds` to end, and are then cut short and given back too,
    so that another process takes every piece at once instead of after its lease."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        #: Set at `begin`: nothing more is claimed.
        self.begun = asyncio.Event()
        #: Set `grace_seconds` after `begin`: what is still in flight is cut short.
        self.grace_over = asyncio.Event()

    def begin(self) -> None:
        """Stop claiming now; the grace starts. Once only: a later call changes nothing."""
        if self.begun.is_set():
            return
        log.info("stopping: nothing more is claimed; work in flight has %s s", self.grace_seconds)
        self.begun.set()
        asyncio.get_running_loop().call_later(self.grace_seconds, self.grace_over.set)

    async def until_signalled(self) -> None:
        """Begin at SIGTERM or SIGINT, and return then (a process that is not a server)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.begin)
        await self.begun.wait()

    async def within_grace(self, work: Awaitable[T]) -> T:
        """`work`'s result, unless a shutdown's grace ends first: then `work` is cancelled,
        and CutShort raised once it has ended."""
        running = asyncio.ensure_future(work)
        ending = asyncio.ensure_future(self.grace_over.wait())
        try:
            await asyncio.wait({running, ending}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            running.cancel()
            raise
        finally:
            ending.cancel()
        if running.done():
            return running.result()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        raise CutShort


class BackgroundTask:
    """`run(stop)` as a task of its own, named `name`, started once: it returns once `stop`
    is set (by `stop()`, or by whoever else holds it: a process's shutdown)."""

    def __init__(
        self,
        name: str,
        run: Callable[[asyncio.Event], Awaitable[None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._stop = stop if stop is not None else asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._running(), name=self.name)

    async def _running(self) -> None:
        try:
            await self._run(self._stop)
        except Exception:
            # Said when it happens: a loop that died leaves its work undone until `stop`.
            log.exception("%s stopped by an error", self.name)
            raise

    async def stop(self) -> None:
        """Set `stop` and wait for the loop to end; the error it ended with, if any, raises."""
        self._stop.set()
        if self._task is not None:
            await self._task


@asynccontextmanager
async def renewing(
    renew: Callable[[], Awaitable[None]], every_seconds: float
) -> AsyncIterator[None]:
    """`renew` every `every_seconds` while the body runs: a claim whose lease ran out
    would be taken up by another worker while this one still works on it."""

    async def keep_renewing() -> None:
        while True:
            await asyncio.sleep(every_seconds)
            await renew()

    renewals = asyncio.create_task(keep_renewing())
    try:
        yield
    finally:
        renewals.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewals
