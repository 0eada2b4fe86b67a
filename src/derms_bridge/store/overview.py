"""What the console's dashboard and bulk resubmit ask of the instances: counts and selections."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Select, Subquery, case, exists, func, select
from sqlalchemy.orm import aliased

from derms_bridge.schemas.ops import (
    COUNT_LIMIT,
    LATENCY_CALLS,
    HourCount,
    InstanceFilter,
    TargetLatency,
)
from derms_bridge.store.instances import InstanceStore, _utc, as_utc, matching
from derms_bridge.store.tables import ActivityRow, BusinessKeyRow, InstanceRow


@dataclass(frozen=True)
class FlowCounts:
    """One flow's instances received in a window, by how they stand now."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    skipped: int = 0
    resolved: int = 0
    rejected: int = 0


def _received_since(since: datetime) -> list[ColumnElement[bool]]:
    """Received since `since`. Bounded above too, a day past now for clocks that run ahead:
    SQLite's planner, without statistics, takes a range open at one end for a quarter of
    the table, and would rather read the whole table in another index's order than sort a
    quarter of it; a range closed at both ends it reads from the index that starts with
    received_at."""
    return [
        InstanceRow.received_at >= _utc(since),
        InstanceRow.received_at < _utc(datetime.now(UTC) + timedelta(days=1)),
    ]


#: A failed email is kept as an activity without a duration: it would read as 0 ms.
UNTIMED_TARGETS = ("smtp",)


def _timed_calls(since: datetime) -> Select[str, float, str | None]:
    return select(ActivityRow.target, ActivityRow.duration_ms, ActivityRow.error).where(
        ActivityRow.at >= _utc(since), ActivityRow.target.not_in(UNTIMED_TARGETS)
    )


def _newest_calls(since: datetime) -> Subquery:
    return _timed_calls(since).order_by(ActivityRow.at.desc()).limit(LATENCY_CALLS).subquery()


def _latency_ordered(since: datetime) -> Select[str, int, int, float, float]:
    # PostgreSQL's percentile_disc is the nearest rank, in one sort per target.
    calls = _newest_calls(since)
    in_order = calls.c.duration_ms.asc()
    return (
        select(
            calls.c.target,
            func.count(),
            func.count(calls.c.error),
            func.percentile_disc(0.5).within_group(in_order),
            func.percentile_disc(0.95).within_group(in_order),
        )
        .group_by(calls.c.target)
        .order_by(calls.c.target)
    )


def _latency_ranked(since: datetime) -> Select[str, int, int, float, float]:
    # SQLite has no percentile: each call ranked among its target's, then the first rank
    # reaching ceil(calls * percent / 100), in integers.
    calls = _newest_calls(since)
    ranked = select(
        calls.c.target,
        calls.c.duration_ms,
        calls.c.error,
        func.row_number()
        .over(partition_by=calls.c.target, order_by=calls.c.duration_ms)
        .label("rank"),
        func.count().over(partition_by=calls.c.target).label("calls"),
    ).subquery()

    def percentile(percent: int) -> ColumnElement[float]:
        reached = ranked.c.rank * 100 >= ranked.c.calls * percent
        return func.min(case((reached, ranked.c.duration_ms)))

    return (
        select(
            ranked.c.target,
            func.max(ranked.c.calls),
            func.count(ranked.c.error),
            percentile(50),
            percentile(95),
        )
        .group_by(ranked.c.target)
        .order_by(ranked.c.target)
    )


@dataclass(frozen=True)
class Latencies:
    """Per target, how long its calls took; `newest_only`: the window held more calls than
    LATENCY_CALLS, and these are of its newest ones."""

    targets: list[TargetLatency]
    newest_only: bool


async def latency_by_target(store: InstanceStore, since: datetime) -> Latencies:
    """Per target, the calls made since `since` (its newest LATENCY_CALLS at most), those
    that failed, and their median and 95th percentile duration by nearest rank, by target
    name; a target with no call is absent."""
    if store.engine.dialect.name == "postgresql":
        query = _latency_ordered(since)
    else:
        query = _latency_ranked(since)
    beyond = _timed_calls(since).order_by(ActivityRow.at.desc()).offset(LATENCY_CALLS).limit(1)
    async with store.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
        more = (await connection.execute(beyond)).first() is not None
    return Latencies(
        [
            TargetLatency(target=target, calls=calls, failed=failed, p50_ms=p50, p95_ms=p95)
            for target, calls, failed, p50, p95 in rows
        ],
        newest_only=more,
    )


def flow_counts(hours: list[HourCount]) -> dict[str, FlowCounts]:
    """Per flow key, the instances of `hours` (counts_by_hour's) by status; a flow with none
    is absent. Summed from the hours, so that the dashboard reads its window once."""
    by_flow: dict[str, dict[str, int]] = {}
    for each in hours:
        statuses = by_flow.setdefault(each.flow, {})
        statuses[each.status] = statuses.get(each.status, 0) + each.count
    return {
        flow: FlowCounts(
            received=sum(statuses.values()),
            succeeded=statuses.get("succeeded", 0),
            failed=statuses.get("failed", 0),
            in_progress=statuses.get("in_progress", 0),
            skipped=statuses.get("skipped", 0),
            resolved=statuses.get("resolved", 0),
            rejected=statuses.get("rejected", 0),
        )
        for flow, statuses in by_flow.items()
    }


@dataclass(frozen=True)
class Failure:
    instance_id: str
    flow: str
    error: str | None
    received_at: datetime


def _not_resubmitted() -> ColumnElement[bool]:
    later = aliased(InstanceRow)
    return ~exists().where(later.resubmit_of == InstanceRow.id)


async def failing_now(store: InstanceStore, since: datetime, limit: int = 10) -> list[Failure]:
    """The newest failed instances since `since` that nobody has resubmitted yet."""
    query = (
        select(InstanceRow.id, InstanceRow.flow, InstanceRow.error, InstanceRow.received_at)
        .where(InstanceRow.status == "failed", *_received_since(since))
        .where(_not_resubmitted())
        .order_by(InstanceRow.received_at.desc(), InstanceRow.id)
        .limit(limit)
    )
    async with store.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        Failure(
            instance_id=row.id,
            flow=row.flow,
            error=row.error,
            received_at=as_utc(row.received_at),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class FailuresToResubmit:
    """The failures a bulk resubmit would run now, oldest first, and how many there are in
    all, counted up to COUNT_LIMIT (`total_exact` false past it)."""

    ids: list[str]
    total: int
    total_exact: bool


async def failures_to_resubmit(
    store: InstanceStore, where: InstanceFilter, limit: int | None
) -> FailuresToResubmit:
    """The failed instances a filter selects that were not resubmitted already (the latest
    run of each message that failed: one whose resubmit succeeded is resolved) and whose
    payloads are kept, oldest first, at most `limit` of them (None: all)."""
    query = matching(InstanceFilter(**{**vars(where), "status": "failed"})).where(
        _not_resubmitted(),
        # Retention purged what it would have sent again.
        InstanceRow.payload_purged_at.is_(None),
    )
    ids = query.with_only_columns(InstanceRow.id)
    # Counted no further than a page of search is: a years-old selection is not read whole.
    up_to_limit = ids.limit(COUNT_LIMIT + 1).subquery()
    oldest_first = ids.order_by(InstanceRow.received_at, InstanceRow.id)
    async with store.engine.connect() as connection:
        counted = await connection.scalar(select(func.count()).select_from(up_to_limit)) or 0
        chosen = (
            await connection.scalars(oldest_first if limit is None else oldest_first.limit(limit))
        ).all()
    return FailuresToResubmit(
        list(chosen), min(counted, COUNT_LIMIT), total_exact=counted <= COUNT_LIMIT
    )


@dataclass(frozen=True)
class ScheduledRuns:
    """A scheduled flow's runs received in a window, by what started them."""

    by_schedule: int = 0
    run_now: int = 0


async def scheduled_runs(
    store: InstanceStore, flows: Collection[str], since: datetime
) -> dict[str, ScheduledRuns]:
    """Per flow of `flows`, its runs since `since`: a schedule's run carries its tick as a
    business identifier (scheduleTick), one an operator started does not."""
    # Looked up instance by instance: the few runs of the scheduled flows in the window,
    # not every schedule tick ever kept.
    ticked = (
        exists()
        .where(
            BusinessKeyRow.instance_id == InstanceRow.id,
            BusinessKeyRow.kind == "scheduleTick",
        )
        .label("ticked")
    )
    query = (
        select(InstanceRow.flow, ticked, func.count())
        .where(InstanceRow.flow.in_(list(flows)), *_received_since(since))
        .group_by(InstanceRow.flow, "ticked")
    )
    counted: dict[str, dict[bool, int]] = {}
    async with store.engine.connect() as connection:
        for flow, by_schedule, count in await connection.execute(query):
            counted.setdefault(flow, {})[bool(by_schedule)] = count
    return {
        flow: ScheduledRuns(by_schedule=runs.get(True, 0), run_now=runs.get(False, 0))
        for flow, runs in counted.items()
    }
