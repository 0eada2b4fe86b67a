"""The hub's work beside its requests: loops that run until they are told to stop (the
workers, the scheduler, the heartbeat), and a lease renewed while a piece of work runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)


class BackgroundTask:
    """`run(stop)` as a task of its own, named `name`: it returns once `stop` is set."""

    def __init__(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self.name = name
        self._run = run
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
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
