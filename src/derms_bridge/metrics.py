"""Prometheus metrics: what the flows did, what the outside systems answered, what waits.

Counters and histograms are kept by the process that does the work. When
`derms-bridge serve` and `derms-bridge worker` run on one machine they keep them in
one directory (`metrics.dir`, prometheus-client's multiprocess mode), so that any
process's /metrics answers the machine's totals. The segments waiting are read from
the store at each scrape, so they are the same whichever process answers.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from derms_bridge import tracing
from derms_bridge.flows.registry import FILE_FLOWS
from derms_bridge.schemas.ops import Activity
from derms_bridge.settings import Schedule, ScheduledFlowKey
from derms_bridge.store.file_job_records import ClaimedJob, ClaimedSegment, SegmentResult
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.storage import StorageReport
from derms_bridge.store.workload import (
    SegmentsWaiting,
    files_in_progress,
    run_end,
    schedule_ticks_through,
    segments_waiting,
)

#: prometheus-client reads it when first imported: `serve` and `worker` set it before.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry()

INSTANCES_RECEIVED = Counter(
    "derms_bridge_instances_received",
    "Instances started, per flow (a resubmitted message starts a new one).",
    ["flow"],
    registry=REGISTRY,
)
INSTANCES_FINISHED = Counter(
    "derms_bridge_instances_finished",
    "Instance runs ended, per flow and status (succeeded, failed, skipped; rejected: a "
    "message refused before its flow ran).",
    ["flow", "status"],
    registry=REGISTRY,
)
INSTANCES_RESOLVED = Counter(
    "derms_bridge_instances_resolved",
    "Failed instances resolved by a resubmit that succeeded, per flow.",
    ["flow"],
    registry=REGISTRY,
)
INSTANCE_DURATION = Histogram(
    "derms_bridge_instance_duration_seconds",
    "From an instance's receipt to the end of its run, per flow.",
    ["flow"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
INSTANCES_RUNNING = Gauge(
    "derms_bridge_instances_running",
    "Request/response flow runs in progress in the live hub processes, per flow.",
    ["flow"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
OUTBOUND_CALLS = Counter(
    "derms_bridge_outbound_calls",
    "Calls to CPMCS and DERMS, per target, operation and HTTP status ('none': no answer).",
    ["target", "operation", "status"],
    registry=REGISTRY,
)
OUTBOUND_CALL_DURATION = Histogram(
    "derms_bridge_outbound_call_duration_seconds",
    "How long calls to CPMCS and DERMS took, answered or not, per target and operation.",
    ["target", "operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
DATABASE_OUTAGES = Counter(
    "derms_bridge_database_outages",
    "Times a hub process found its database refusing writes (one per outage, not per request).",
    registry=REGISTRY,
)
DATABASE_WRITABLE = Gauge(
    "derms_bridge_database_writable",
    "1 while the hub's database takes writes, 0 during an outage (the lowest of the live "
    "hub processes).",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
SEGMENTS_SENT_AGAIN = Counter(
    "derms_bridge_segments_sent_again",
    "File segments sent to CPMCS again when it may have had them already, per flow: "
    "claimed again after a lease ran out while sending, or tried again after a try whose "
    "answer was lost (delivery is at least once per segment).",
    ["flow"],
    registry=REGISTRY,
)
# Present at 0 from the start, so that the first segment sent again is an increase.
for _file_flow in FILE_FLOWS:
    SEGMENTS_SENT_AGAIN.labels(_file_flow)
SCHEDULE_RUNS = Counter(
    "derms_bridge_schedule_runs",
    "Scheduled flow runs ended, per flow and outcome.",
    ["flow", "outcome"],
    registry=REGISTRY,
)
BIG_MESSAGES_READ = Counter(
    "derms_bridge_big_messages_read",
    "JSON messages of 256 KiB or more, read and validated by the hub's worker process "
    "instead of on the event loop.",
    registry=REGISTRY,
)
LOGINS_THROTTLED = Counter(
    "derms_bridge_logins_throttled",
    "Logins refused unchecked after too many failures, per way in (api, metrics, console).",
    ["way"],
    registry=REGISTRY,
)
ROWS_PURGED = Counter(
    "derms_bridge_purged_rows",
    "Rows the retention purge removed, per table and kind (payload: a payload, reply or "
    "file rows of an instance kept; instance: an expired instance deleted with its rows).",
    ["table", "kind"],
    registry=REGISTRY,
)
SPANS_DROPPED = Counter(
    "derms_bridge_spans_dropped",
    "Spans of sampled traces not exported, per reason (queue full: made faster than the "
    "collector took them; export failed: the collector refused them or could not be reached).",
    ["reason"],
    registry=REGISTRY,
)
for _reason in (tracing.QUEUE_FULL, tracing.EXPORT_FAILED):
    SPANS_DROPPED.labels(_reason)


# A metric's child per label values, looked up once: `labels` takes a lock and checks its
# values on every call, several times a flow.
@cache
def _received(flow: str) -> Counter:
    return INSTANCES_RECEIVED.labels(flow)


@cache
def _finished(flow: str, status: str) -> Counter:
    return INSTANCES_FINISHED.labels(flow, status)


@cache
def _duration(flow: str) -> Histogram:
    return INSTANCE_DURATION.labels(flow)


@cache
def _running(flow: str) -> Gauge:
    return INSTANCES_RUNNING.labels(flow)


@cache
def _calls(target: str, operation: str, status: str) -> Counter:
    return OUTBOUND_CALLS.labels(target, operation, status)


@cache
def _call_duration(target: str, operation: str) -> Histogram:
    return OUTBOUND_CALL_DURATION.labels(target, operation)


def instance_received(flow: str) -> None:
    _received(flow).inc()


def instance_finished(flow: str, status: str, seconds: float | None) -> None:
    _finished(flow, status).inc()
    if seconds is not None:
        _duration(flow).observe(seconds)


def instance_resolved(flow: str) -> None:
    INSTANCES_RESOLVED.labels(flow).inc()


def instance_running(flow: str) -> AbstractContextManager[None]:
    tracked: AbstractContextManager[None] = _running(flow).track_inprogress()
    return tracked


def outbound_call_made(call: Activity) -> None:
    """An HttpConnection's watcher: every outbound call, whoever made it, counts once."""
    status = str(call.http_status) if call.http_status is not None else "none"
    _calls(call.target, call.operation, status).inc()
    _call_duration(call.target, call.operation).observe(call.duration_ms / 1000)


def schedule_run_finished(flow: str, outcome: str) -> None:
    """For the scheduler: a scheduled run of `flow` ended with `outcome` (e.g. succeeded,
    failed, nothing_to_do)."""
    SCHEDULE_RUNS.labels(flow, outcome).inc()


def rows_purged(table: str, kind: str, rows: int) -> None:
    ROWS_PURGED.labels(table, kind).inc(rows)


def spans_dropped(reason: str, spans: int) -> None:
    SPANS_DROPPED.labels(reason).inc(spans)


class MeteredFileStore(FileJobStore):
    """The file store, counting each file run that ends (the file workers end them) and
    each segment sent again."""

    async def record_and_claim(
        self,
        owner: str,
        lease: timedelta,
        results: Sequence[SegmentResult],
        limit: int,
        released: Sequence[int] = (),
    ) -> tuple[bool, list[ClaimedSegment]]:
        due, claimed = await super().record_and_claim(owner, lease, results, limit, released)
        for result in results:
            if result.sent_again:
                SEGMENTS_SENT_AGAIN.labels(result.segment.flow).inc()
        for segment in claimed:
            if segment.taken_over:
                SEGMENTS_SENT_AGAIN.labels(segment.flow).inc()
        return due, claimed

    async def acknowledged(
        self,
        job: ClaimedJob,
        owner: str,
        *,
        ack: Any,
        ack_error: str | None,
        activities: Sequence[Activity],
    ) -> None:
        await super().acknowledged(job, owner, ack=ack, ack_error=ack_error, activities=activities)
        ended = await run_end(self._instances.engine, job.instance_id)
        if ended is not None:
            # A later run's time since receipt includes the wait for its resubmission.
            instance_finished(job.flow, ended.status, ended.seconds if job.run == 1 else None)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(directory: Path) -> None:
    """Drop the live gauges of hub processes that are gone, and this one's when it exits,
    as prometheus-client asks; their counters stay, so that totals never go back."""
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _is_alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(directory))  # type: ignore[no-untyped-call]
    atexit.register(multiprocess.mark_process_dead, os.getpid(), str(directory))


class _ReadFromStore(Collector):
    """What every process reads the same from the shared database at a scrape."""

    def __init__(
        self,
        waiting: list[SegmentsWaiting],
        files: Mapping[str, int],
        next_ticks: Mapping[str, datetime],
    ) -> None:
        self._waiting = {w.flow: w for w in waiting}
        self._files = files
        self._next_ticks = next_ticks

    def collect(self) -> Iterator[Metric]:
        files = GaugeMetricFamily(
            "derms_bridge_files_in_progress",
            "Files whose run has not ended (queued, sending, acknowledging), per flow.",
            labels=["flow"],
        )
        for flow in sorted(FILE_FLOWS.keys() | self._files.keys()):
            files.add_metric([flow], self._files.get(flow, 0))
        yield files
        ticks = GaugeMetricFamily(
            "derms_bridge_schedule_next_tick_timestamp_seconds",
            "The first tick of an enabled schedule that no hub process has handled yet (run, "
            "or skipped while the previous run went on), per flow; in the past: it is late.",
            labels=["flow"],
        )
        for flow, tick in sorted(self._next_ticks.items()):
            ticks.add_metric([flow], tick.timestamp())
        yield ticks

        in_flight = GaugeMetricFamily(
            "derms_bridge_segments_in_flight",
            "File segments held by a live worker, being sent to CPMCS, per flow.",
            labels=["flow"],
        )
        queued = GaugeMetricFamily(
            "derms_bridge_segments_queued",
            "File segments waiting for a worker, per flow.",
            labels=["flow"],
        )
        for flow in sorted(FILE_FLOWS.keys() | self._waiting.keys()):
            found = self._waiting.get(flow, SegmentsWaiting(flow, 0, 0))
            in_flight.add_metric([flow], found.in_flight)
            queued.add_metric([flow], found.queued)
        yield in_flight
        yield queued


async def _next_ticks(
    engine: AsyncEngine, schedules: Mapping[ScheduledFlowKey, Schedule]
) -> dict[str, datetime]:
    handled = await schedule_ticks_through(engine)
    return {
        flow: schedule.next_tick(handled[flow])
        for flow, schedule in schedules.items()
        if schedule.enabled and flow in handled
    }


class _Storage(Collector):
    def __init__(self, report: StorageReport) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        size = self._report.size
        yield GaugeMetricFamily(
            "derms_bridge_database_bytes",
            "The database's size on disk (measured at most once a minute).",
            value=size.bytes,
        )
        table_bytes = GaugeMetricFamily(
            "derms_bridge_table_bytes",
            "The largest tables' size with their indexes, per table.",
            labels=["table"],
        )
        table_rows = GaugeMetricFamily(
            "derms_bridge_table_rows",
            "The largest tables' rows (PostgreSQL's estimate), per table.",
            labels=["table"],
        )
        dead_rows = GaugeMetricFamily(
            "derms_bridge_table_dead_rows",
            "PostgreSQL: rows vacuum has not reclaimed yet, per table of the largest.",
            labels=["table"],
        )
        for table in size.tables:
            table_bytes.add_metric([table.name], table.bytes)
            table_rows.add_metric([table.name], table.rows)
            if table.dead_rows is not None:
                dead_rows.add_metric([table.name], table.dead_rows)
        yield table_bytes
        yield table_rows
        if size.dialect == "postgresql":
            yield dead_rows
        if size.oldest_instance is not None:
            yield GaugeMetricFamily(
                "derms_bridge_oldest_instance_timestamp_seconds",
                "When the oldest instance kept was received (Unix time).",
                value=size.oldest_instance.timestamp(),
            )
        waiting = GaugeMetricFamily(
            "derms_bridge_purge_waiting",
            "What the retention's purge would remove now: payloads, instances, file_rows.",
            labels=["kind"],
        )
        for kind, rows in self._report.purge_waiting.items():
            waiting.add_metric([kind], rows)
        yield waiting
        if size.dialect == "postgresql":
            yield GaugeMetricFamily(
                "derms_bridge_oldest_transaction_seconds",
                "PostgreSQL: how long the oldest transaction open on the hub's database has "
                "run (0: none); a long one stops vacuum and slows the work queues.",
                value=size.oldest_transaction_seconds or 0.0,
            )
            yield GaugeMetricFamily(
                "derms_bridge_database_autovacuum",
                "PostgreSQL: 1 when the server runs autovacuum, 0 when it does not (nothing "
                "then reclaims what the purge deletes).",
                value=1.0 if size.autovacuum else 0.0,
            )


async def exposition(
    engine: AsyncEngine, schedules: Mapping[ScheduledFlowKey, Schedule], storage: StorageReport
) -> bytes:
    """The text a scraper gets: this machine's counters, what the store says waits (the
    segments and files in progress, each schedule's next tick to handle), and the storage as
    last measured."""
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    counted = REGISTRY
    if directory:
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted, directory)  # type: ignore[no-untyped-call]
    waiting = CollectorRegistry()
    waiting.register(
        _ReadFromStore(
            await segments_waiting(engine),
            await files_in_progress(engine),
            await _next_ticks(engine, schedules),
        )
    )
    waiting.register(_Storage(storage))
    return generate_latest(counted) + generate_latest(waiting)
