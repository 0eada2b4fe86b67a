"""What operators ask of the hub, whether through the API, the console or the CLI: instances
found and read with their activity and file progress, a file's rows set aside as a CSV,
the dashboard's counts, the failures a bulk resubmit would take, a file run's
acknowledgement sent again, and the record of lookup edits."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from derms_bridge.catalog import BY_KEY
from derms_bridge.engine.runner import InstanceNotFound
from derms_bridge.flows.registry import FILE_FLOWS
from derms_bridge.lookup_tables import RowChange
from derms_bridge.schemas.ops import (
    FileProgress,
    HourCount,
    InstanceDetail,
    InstanceFilter,
    InstancePage,
    InstanceSummary,
)
from derms_bridge.store.database import open_engine
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.hour_counts import counts_by_hour
from derms_bridge.store.instance_records import InstanceHistory, InstanceRecord
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.lookup_audit import LookupEdit, recent_edits, record_edit
from derms_bridge.store.overview import (
    Failure,
    FailuresToResubmit,
    FlowCounts,
    Latencies,
    ScheduledRuns,
    failing_now,
    failures_to_resubmit,
    latency_by_target,
    scheduled_runs,
)

# Given to the dashboard, which sums the flows' counts from the hours it reads.
from derms_bridge.store.overview import flow_counts as flow_counts


class NoAcknowledgementToSend(Exception):
    """The instance is not a file run that has finished with an acknowledgement."""


class Operations:
    def __init__(
        self, instances: InstanceStore, files: FileJobStore, *, wake_workers: Callable[[], None]
    ) -> None:
        self._instances = instances
        self._files = files
        self._wake_workers = wake_workers

    @classmethod
    def of_database(cls, url: str) -> Operations:
        """For a process that only reads and records (the CLI): no hub around it, and the
        work it makes due is found by the hub's workers as they poll."""
        instances = InstanceStore(open_engine(url))
        return cls(instances, FileJobStore(instances), wake_workers=lambda: None)

    async def aclose(self) -> None:
        await self._instances.aclose()

    async def search(self, where: InstanceFilter) -> InstancePage:
        """Newest first."""
        found = await self._instances.search(where)
        return InstancePage(
            items=[_summary(record) for record in found.items],
            total=found.total,
            total_exact=found.total_exact,
            limit=where.limit,
            offset=where.offset,
            next_cursor=found.next_after.text() if found.next_after else None,
        )

    async def exists(self, instance_id: str) -> bool:
        return await self._instances.payload_of(instance_id) is not None

    async def detail(self, instance_id: str) -> InstanceDetail | None:
        """One instance with its activities in order, the runs that came of it and, for a
        file flow, its segments' progress."""
        # The file's progress is read first: a run's end writes the job and the instance
        # in one transaction, so the instance read after it is never older than the
        # progress (a page showing the file done and the instance still in progress).
        progress = await self._files.progress(instance_id)
        history = await self._instances.get(instance_id)
        if history is None:
            return None
        return _detail(history, progress)

    async def acknowledge_again(self, instance_id: str) -> None:
        """A finished file run's MsgAck goes to DERMS again, as it went, to the DERMS that
        sent the file, sent by a worker: for an acknowledgement DERMS lost. Its call is an
        activity of the instance, which ends succeeded or failed as DERMS takes it."""
        if not await self.exists(instance_id):
            raise InstanceNotFound(instance_id)
        if await self._files.acknowledge_again(instance_id):
            self._wake_workers()
            return
        progress = await self._files.progress(instance_id)
        if progress is None:
            raise NoAcknowledgementToSend(f"instance {instance_id} is not a file flow's")
        if progress.state != "done":
            raise NoAcknowledgementToSend(
                f"instance {instance_id}'s file run is not finished (it is {progress.state})"
            )
        raise NoAcknowledgementToSend(
            f"instance {instance_id}'s run kept no acknowledgement to send again (it ran "
            "before the hub kept them)"
        )

    async def set_aside_csv(self, instance_id: str) -> Iterator[bytes] | None:
        """A file flow's rows set aside, as they came, under the header of the flow's file
        (so that the file can be corrected and sent again), in chunks as they are
        decompressed; None when the instance is not a file flow's."""
        found = await self._files.set_aside_lines(instance_id)
        if found is None:
            return None
        flow, lines_zlib = found
        return _set_aside_csv(FILE_FLOWS[flow].header, lines_zlib)

    async def counts_by_flow(self, since: datetime) -> dict[str, FlowCounts]:
        return flow_counts(await self.counts_by_hour(since))

    async def counts_by_hour(self, since: datetime) -> list[HourCount]:
        return await counts_by_hour(self._instances, since)

    async def latency_by_target(self, since: datetime) -> Latencies:
        return await latency_by_target(self._instances, since)

    async def failing_now(self, since: datetime) -> list[Failure]:
        return await failing_now(self._instances, since)

    async def scheduled_runs(
        self, flows: Collection[str], since: datetime
    ) -> dict[str, ScheduledRuns]:
        return await scheduled_runs(self._instances, flows, since)

    async def failures_to_resubmit(
        self, where: InstanceFilter, limit: int | None
    ) -> FailuresToResubmit:
        """What a bulk resubmit takes, from the console or the CLI: the failed instances
        the filter selects that were not resubmitted yet (the engine refuses those), at most
        `limit` of them (None: all); and how many there are."""
        return await failures_to_resubmit(self._instances, where, limit)

    async def lookup_edits(self, lookup: str) -> list[LookupEdit]:
        return await recent_edits(self._instances, lookup)

    async def record_lookup_edit(
        self, lookup: str, operator: str, changes: Sequence[RowChange]
    ) -> None:
        await record_edit(self._instances, lookup, operator, changes)


#: How much of the compressed rows set aside is decompressed at a time.
_SET_ASIDE_CHUNK = 64 * 1024


def _set_aside_csv(header: Sequence[str], lines_zlib: bytes | None) -> Iterator[bytes]:
    yield ",".join(header).encode() + b"\n"
    if lines_zlib is None:
        return
    lines = zlib.decompressobj()
    for start in range(0, len(lines_zlib), _SET_ASIDE_CHUNK):
        yield lines.decompress(lines_zlib[start : start + _SET_ASIDE_CHUNK])
    yield lines.flush()


def _summary_fields(record: InstanceRecord) -> dict[str, Any]:
    info = BY_KEY.get(record.flow)
    return {
        "id": record.id,
        "flow": record.flow,
        "flow_identifier": info.identifier if info else record.flow,
        "status": record.status,
        "caller": record.caller,
        "error": record.error,
        "skipped_reason": record.skipped_reason,
        "attempts": record.attempts,
        "resubmit_of": record.resubmit_of,
        "parent_id": record.parent_id,
        "received_at": record.received_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "business_keys": record.business_keys,
    }


def _summary(record: InstanceRecord) -> InstanceSummary:
    return InstanceSummary(**_summary_fields(record))


def _detail(history: InstanceHistory, file: FileProgress | None) -> InstanceDetail:
    return InstanceDetail(
        **_summary_fields(history),
        payload=history.payload,
        reply=history.reply,
        payload_purged_at=history.payload_purged_at,
        resubmitted_as=history.resubmitted_as,
        children=history.children,
        file=file,
        activities=history.activities,
        trace_id=history.trace_id,
    )
