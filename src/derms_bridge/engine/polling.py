"""The loop each of the hub's workers runs: steps while there is work, then a nap that
new work (wake) or a stop cuts short, so that a quiet hub still finds what another
process left within `poll_seconds`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PollingLoop:
    def __init__(self, what: str, poll_seconds: float, step: Callable[[], Awaitable[bool]]) -> None:
        self._what = what
        self._poll_seconds = poll_seconds
        #: Does one round of work; true when there may be more at once.
        self._step = step
        self._work = asyncio.Event()

    def wake(self) -> None:
        """More work may be waiting."""
        self._work.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the step, so that a wake during it is not lost.
            self._work.clear()
            try:
                busy = await self._step()
            except Exception:
                log.exception("%s step failed", self._what)
                busy = False
            if busy:
                continue
            waiting = asyncio.create_task(self._work.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waiting, stopping},
                timeout=self._poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiting.cancel()
            stopping.cancel()


def worker_name() -> str:
    """A worker, as the leases it holds name it: host, pid and a few random letters."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
