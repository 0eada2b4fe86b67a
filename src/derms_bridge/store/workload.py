"""What the file workers have still to do, read from the store: the same for every process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from derms_bridge.store.instances import as_utc, utcnow
from derms_bridge.store.tables import FileJobRow, InstanceRow, ScheduleRow, SegmentRow


@dataclass(frozen=True)
class SegmentsWaiting:
    flow: str
    in_flight: int
    queued: int


async def segments_waiting(engine: AsyncEngine) -> list[SegmentsWaiting]:
    """Per file flow: segments held by a live worker, and segments free to be claimed
    (pending, or held under a lease that has lapsed) in runs that are still sending."""
    now = utcnow()
    held = and_(SegmentRow.status == "sending", SegmentRow.lease_until >= now)
    claimable = and_(
        FileJobRow.state.in_(("queued", "running")),
        or_(
            SegmentRow.status == "pending",
            and_(SegmentRow.status == "sending", SegmentRow.lease_until < now),
        ),
    )
    query = (
        select(
            FileJobRow.flow,
            func.sum(case((held, 1), else_=0)),
            func.sum(case((claimable, 1), else_=0)),
        )
        .join(FileJobRow, FileJobRow.instance_id == SegmentRow.instance_id)
        .where(SegmentRow.status.in_(("pending", "sending")))
        .group_by(FileJobRow.flow)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        SegmentsWaiting(flow, int(in_flight or 0), int(queued or 0))
        for flow, in_flight, queued in rows
    ]


async def files_in_progress(engine: AsyncEngine) -> dict[str, int]:
    """Per file flow: the files whose current run has not ended."""
    query = (
        select(FileJobRow.flow, func.count())
        .where(FileJobRow.state != "done")
        .group_by(FileJobRow.flow)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {flow: int(count) for flow, count in rows}


async def schedule_ticks_through(engine: AsyncEngine) -> dict[str, datetime]:
    """Per schedule known to the store: the moment up to which its ticks are handled."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(ScheduleRow.flow, ScheduleRow.ticks_through))).all()
    return {flow: as_utc(through) for flow, through in rows}


@dataclass(frozen=True)
class RunEnd:
    status: str
    seconds: float | None


async def run_end(engine: AsyncEngine, instance_id: str) -> RunEnd | None:
    """How an instance's run ended, and how long after its receipt; None while it runs."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(InstanceRow.status, InstanceRow.received_at, InstanceRow.finished_at).where(
                    InstanceRow.id == instance_id
                )
            )
        ).first()
    if row is None or row.finished_at is None:
        return None
    return RunEnd(row.status, (row.finished_at - row.received_at).total_seconds())
