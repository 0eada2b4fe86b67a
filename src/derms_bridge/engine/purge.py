"""Retention: the purge, a built-in scheduled job (`purge`) that removes what expired.

For every flow and outcome (settings `retention`), it deletes the instances that expired,
then empties the payloads that expired of those that stay, then deletes the file rows of
those payloads, then the schedule ticks that started no run and expired with their flow's
history, each in batches of `retention.batch_size`, short transactions each
(store/retention.py): on
PostgreSQL one a batch, on SQLite, where one writer goes at a time, slices of a few
milliseconds, with the writes queued meanwhile in this process going between two. It
stops between two batches when its process stops; the next run takes up what is left.

With an archive configured (engine/archive.py), a batch's instances are written to it
before they go; when that fails the batch stays, and the run stops and fails.

A run is an instance of the flow `purge`, started by the scheduler (claimed once across
the hub processes, like the scheduled flows' ticks) or by `derms-bridge purge`; its reply
counts what went, table by table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from derms_bridge import metrics
from derms_bridge.catalog import BY_KEY, PURGE
from derms_bridge.engine.archive import Archive, Purged
from derms_bridge.errors import FileStorageError
from derms_bridge.flows.ports import FlowContext, FlowResult, ScheduledFlow
from derms_bridge.schemas.retention import PurgeCandidates, PurgeReport
from derms_bridge.settings.retention import OUTCOME_STATUSES, Keep, Outcome, Retention
from derms_bridge.store.retention import Archiving, Expiry, Removed, RetentionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expired:
    """The flows an outcome's days are alike for, and what of theirs has expired."""

    outcome: Outcome
    keep: Keep
    payloads: Expiry
    instances: Expiry


class ArchiveFailed(Exception):
    """The archive refused a batch, which stayed; what went before it is in `report`."""

    def __init__(self, report: PurgeReport, cause: FileStorageError) -> None:
        super().__init__(
            f"archiving failed, so its batch was not removed: {cause} "
            f"({report.batches} batches removed before it)"
        )
        self.report = report


class Purge:
    def __init__(
        self,
        store: RetentionStore,
        retention: Retention,
        *,
        stopping: asyncio.Event,
        archive: Archive | None = None,
    ) -> None:
        self._store = store
        self._retention = retention
        self._stopping = stopping
        self._archive = archive

    def expiries(self, now: datetime) -> list[Expired]:
        """Per outcome, the flows kept alike (all those without days of their own, then
        each that has some), so that a few searches cover every flow."""
        found = []
        for outcome, statuses in OUTCOME_STATUSES.items():
            alike: dict[Keep, list[str]] = {}
            for flow in BY_KEY:
                alike.setdefault(self._retention.keep(flow, outcome), []).append(flow)
            for keep, flows in alike.items():
                found.append(
                    Expired(
                        outcome,
                        keep,
                        Expiry(tuple(flows), statuses, now - timedelta(days=keep.payload_days)),
                        Expiry(tuple(flows), statuses, now - timedelta(days=keep.instance_days)),
                    )
                )
        return found

    def skipped_tick_expiries(self, now: datetime) -> dict[datetime, tuple[str, ...]]:
        """Per cut-off, the flows whose skipped schedule ticks before it go: a skipped tick
        is kept as long as the longest-kept instance of its flow, so that a schedule's
        history shows no gap its runs do not also have."""
        alike: dict[datetime, list[str]] = {}
        for flow in BY_KEY:
            days = max(
                self._retention.keep(flow, outcome).instance_days for outcome in OUTCOME_STATUSES
            )
            alike.setdefault(now - timedelta(days=days), []).append(flow)
        return {before: tuple(flows) for before, flows in alike.items()}

    def _archiving(self, purged: Purged) -> Archiving | None:
        return None if self._archive is None else partial(self._archive.write, purged)

    async def run(self, now: datetime | None = None) -> PurgeReport:
        """Raises ArchiveFailed when the archive refuses a batch."""
        now = now or datetime.now(UTC)
        removed: Removed = {}
        payloads = 0
        batches = 0

        async def in_batches(kind: str, batch: Callable[[], Awaitable[Removed]]) -> bool:
            """Batches until one removes nothing; False when the process is stopping."""
            nonlocal batches, payloads
            while not self._stopping.is_set():
                try:
                    went = await batch()
                except FileStorageError as exc:
                    report = PurgeReport(payloadsPurged=payloads, removed=removed, batches=batches)
                    raise ArchiveFailed(report, exc) from exc
                if not went:
                    return True
                batches += 1
                for table, rows in went.items():
                    if kind == "payload" and table == "instances":
                        payloads += rows
                    else:
                        removed[table] = removed.get(table, 0) + rows
                    metrics.rows_purged(table, kind, rows)
                # A yield at least: what waits for the event loop goes before the next batch.
                await asyncio.sleep(0)
            return False

        expiries = self.expiries(now)
        going = True
        # Whole instances first: an instance that goes is deleted (and archived) with its
        # payload, rather than its payload emptied, a new version of its row written into
        # every index, and then deleted. An instance named by one that expires too (the
        # run that resubmitted it, its child) goes after it: another pass takes it, until a
        # pass removes nothing.
        before = -1
        while going and before != batches:
            before = batches
            for expired in expiries:
                going = going and await in_batches(
                    "instance",
                    partial(
                        self._store.delete_instances, expired.instances, self._archiving("instance")
                    ),
                )
        # Then the payloads that expired of the instances that stay.
        for expired in expiries:
            going = going and await in_batches(
                "payload",
                partial(
                    self._store.purge_payloads, expired.payloads, now, self._archiving("payload")
                ),
            )
        going = going and await in_batches("payload", self._store.delete_file_rows)
        for cut_off, flows in self.skipped_tick_expiries(now).items():
            going = going and await in_batches(
                "instance", partial(self._store.delete_skipped_ticks, flows, cut_off)
            )
        if not going:
            log.info("purge stopped with its process; the next run goes on")
        return PurgeReport(payloadsPurged=payloads, removed=removed, batches=batches)

    async def candidates(self, now: datetime | None = None) -> list[PurgeCandidates]:
        """What a run would remove now, per flow and outcome (those with anything to go)."""
        now = now or datetime.now(UTC)
        found = []
        for expired in self.expiries(now):
            payloads = await self._store.count_payloads(expired.payloads, expired.instances)
            instances = await self._store.count_instances(expired.instances)
            for flow in sorted(payloads.keys() | instances.keys(), key=list(BY_KEY).index):
                found.append(
                    PurgeCandidates(
                        flow=flow,
                        outcome=expired.outcome,
                        payloadDays=expired.keep.payload_days,
                        instanceDays=expired.keep.instance_days,
                        payloads=payloads.get(flow, 0),
                        instances=instances.get(flow, 0),
                    )
                )
        return found

    async def file_rows_waiting(self) -> Removed:
        return await self._store.count_file_rows()

    async def skipped_ticks_waiting(self, now: datetime | None = None) -> int:
        """Schedule ticks that started no run and would go now."""
        now = now or datetime.now(UTC)
        return sum(
            [
                await self._store.count_skipped_ticks(flows, before)
                for before, flows in self.skipped_tick_expiries(now).items()
            ]
        )


def purge_flow(purge: Purge) -> ScheduledFlow[PurgeReport]:
    """The purge as a scheduled flow: the scheduler claims, leases and records it as it
    does flows 16 and 17."""

    async def run(_: FlowContext) -> FlowResult[PurgeReport]:
        try:
            return FlowResult.ok(await purge.run())
        except ArchiveFailed as exc:
            log.warning("purge stopped: %s", exc)
            return FlowResult.failed(exc.report, str(exc))

    return ScheduledFlow(info=PURGE, reply_model=PurgeReport, run=run)
