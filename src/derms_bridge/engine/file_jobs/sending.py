"""Step 3's mechanics for the file flows (7, 8): a worker's segments sent many at once,
their results recorded and more claimed in rounds of the store."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta

from derms_bridge.engine.background import Shutdown
from derms_bridge.store.file_job_records import ClaimedSegment, SegmentResult
from derms_bridge.store.file_jobs import FileJobStore

log = logging.getLogger(__name__)


class SegmentSending:
    """A worker's sending while segments are left: `parallelism` senders, each of which
    takes the next claimed segment, its body built ahead, the moment its answer comes, as a
    plain client's senders do. Beside them, store rounds record the results, give back
    what will not be sent, and claim ahead up to three times the parallelism, so that a
    sender does not wait on the store; one task renews the leases of all the segments held.
    A failed segment stops its file: what is claimed of it and not sent goes back, and its
    segments being tried again are not tried any more.

    A process's shutdown stops the claims at once and gives back what was claimed ahead;
    the segments in flight get the shutdown's grace to end, their results recorded, and
    those still going when it ends are cut short and given back: another process sends
    them again at once (CPMCS may have taken them; at least once)."""

    def __init__(
        self,
        *,
        files: FileJobStore,
        owner: str,
        lease: timedelta,
        parallelism: int,
        body: Callable[[ClaimedSegment], bytes],
        send: Callable[[ClaimedSegment, bytes, Callable[[str], bool]], Awaitable[SegmentResult]],
        wake: Callable[[], None],
        shutdown: Shutdown,
    ) -> None:
        self._files = files
        self._owner = owner
        self._lease = lease
        self._parallelism = parallelism
        self._body = body
        self._send = send
        self._wake = wake
        self._shutdown = shutdown
        self._ready: deque[tuple[ClaimedSegment, bytes]] = deque()
        self._in_flight: set[int] = set()
        self._results: list[SegmentResult] = []
        self._released: list[int] = []
        self._failed: set[str] = set()
        self._round: asyncio.Task[None] | None = None
        self._store_failed = False
        # False once a claim found fewer segments than it asked for, or sending stopped.
        self._more = True
        self._refilled = asyncio.Event()
        self._broken: BaseException | None = None
        # Bound once, not once for each segment it goes with.
        self._still_sent = self._file_still_sent

    async def run(self) -> bool:
        """True when there were segments to send."""
        if self._shutdown.begun.is_set():
            return False
        self._top_up()
        assert self._round is not None
        await self._round
        if not self._ready:
            while self._round is not None:
                await self._round
            if self._broken is not None:
                raise self._broken
            return False
        senders = [asyncio.create_task(self._sender()) for _ in range(self._parallelism)]
        renewing = asyncio.create_task(self._renew())
        stopping = asyncio.create_task(self._stop_at_shutdown(senders))
        try:
            await asyncio.wait(senders)
            # Senders cut short leave segments to give back, and no round to do it.
            self._top_up()
            while self._round is not None:
                await self._round
        finally:
            for task in (*senders, renewing, stopping):
                task.cancel()
            await asyncio.gather(*senders, renewing, stopping, return_exceptions=True)
        if self._broken is not None:
            raise self._broken
        return True

    async def _sender(self) -> None:
        while True:
            while not self._ready:
                if not self._more:
                    return
                self._refilled.clear()
                await self._refilled.wait()
            segment, body = self._ready.popleft()
            self._in_flight.add(segment.id)
            try:
                result = await self._send(segment, body, self._still_sent)
            except asyncio.CancelledError:
                self._released.append(segment.id)
                raise
            except Exception as error:
                self._stop(error)
                continue
            finally:
                self._in_flight.discard(segment.id)
            self._results.append(result)
            if result.error is not None:
                self._failed.add(segment.instance_id)
                self._release(lambda held: held.instance_id in self._failed)
            self._top_up()

    def _file_still_sent(self, instance_id: str) -> bool:
        """Whether a file's segments still go: none of them failed, and sending goes on."""
        return self._broken is None and instance_id not in self._failed

    def _top_up(self) -> None:
        """Start a store round if one is due and none is running. Rounds carry several
        results and claims, not one a segment: a round's statements cost the hub more than
        sending a segment does."""
        if self._round is not None or self._store_failed:
            return
        low = (
            self._more
            and not self._shutdown.begun.is_set()
            and len(self._ready) <= self._parallelism
        )
        asked = 3 * self._parallelism - len(self._ready) - len(self._in_flight) if low else 0
        if (
            asked > 0
            or self._released
            or len(self._results) >= self._parallelism
            or (self._results and (not self._in_flight or self._failed))
        ):
            self._round = asyncio.create_task(
                self._store_round(self._results, asked, self._released)
            )
            self._results, self._released = [], []

    async def _store_round(
        self, results: list[SegmentResult], asked: int, released: list[int]
    ) -> None:
        try:
            due, claimed = await self._files.record_and_claim(
                self._owner, self._lease, results, asked, released
            )
        except Exception as error:
            self._store_failed = True
            self._round = None
            self._stop(error)
            return
        self._round = None
        if due:
            self._wake()
        if len(claimed) < asked:
            self._more = False
        for segment in claimed:
            if (
                self._broken is not None
                or segment.instance_id in self._failed
                or self._shutdown.begun.is_set()
            ):
                self._released.append(segment.id)
                continue
            try:
                self._ready.append((segment, self._body(segment)))
            except Exception as error:
                self._released.append(segment.id)
                self._stop(error)
        self._refilled.set()
        self._top_up()

    def _release(self, which: Callable[[ClaimedSegment], bool]) -> None:
        """Give back claimed segments that will not be sent."""
        self._released += [segment.id for segment, _ in self._ready if which(segment)]
        self._ready = deque(held for held in self._ready if not which(held[0]))

    def _stop(self, error: BaseException) -> None:
        """An error no segment's result explains: nothing more is sent, what is in flight
        ends, what is claimed goes back, and the error is raised at the end."""
        self._broken = self._broken or error
        self._stop_claiming()

    def _stop_claiming(self) -> None:
        """Nothing more is claimed, what is claimed and not sent goes back, and the senders
        end once their segments in flight have."""
        self._more = False
        self._release(lambda _: True)
        self._refilled.set()

    async def _stop_at_shutdown(self, senders: list[asyncio.Task[None]]) -> None:
        await self._shutdown.begun.wait()
        self._stop_claiming()
        self._top_up()
        await self._shutdown.grace_over.wait()
        for sender in senders:
            sender.cancel()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            held = [
                *(segment.id for segment, _ in self._ready),
                *self._in_flight,
                *(result.segment.id for result in self._results),
            ]
            try:
                await self._files.renew_segments(self._owner, self._lease, held)
            except Exception:
                # The next renewal may get through before the leases end.
                log.exception("renewing the leases of %d segments failed", len(held))
