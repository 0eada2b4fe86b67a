"""A file worker's rounds on segments: the statements, built once, that record results,
give back claims and claim more, and make a run's acknowledgement due when its last
segment is recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from derms_bridge.schemas.ops import Activity
from derms_bridge.store.file_job_records import ClaimedSegment, SegmentResult
from derms_bridge.store.instances import utcnow
from derms_bridge.store.tables import ActivityRow, FileJobRow, InstanceRow, SegmentRow
from derms_bridge.tracing import TraceRef, kept_ref

#: A job's flow, message and trace, as its segments are claimed with them.
KeptJob = tuple[str, Any, TraceRef | None]


def _live(lease: Any, now: Any) -> Any:
    return and_(lease.is_not(None), lease >= now)


# The statements of a round of results and claims, built once: building a statement and
# its cache key again for each round cost the hub more CPU than SQLite took to run it.
_NOW = bindparam("now", type_=DateTime(timezone=True))
_HOLDER = bindparam("holder", type_=String)

#: Claimed segments given back.
_RELEASE = (
    update(SegmentRow)
    .where(SegmentRow.id.in_(bindparam("ids", expanding=True)), SegmentRow.owner == _HOLDER)
    .values(status="pending", owner=None, lease_until=None)
)
#: Segments CPMCS took.
_ACCEPT = (
    update(SegmentRow)
    .where(SegmentRow.id.in_(bindparam("ids", expanding=True)), SegmentRow.owner == _HOLDER)
    .values(status="accepted", error=None, lease_until=None)
)
_FREE = or_(
    SegmentRow.status == "pending",
    and_(SegmentRow.status == "sending", SegmentRow.lease_until < _NOW),
)
#: The next free segments of running jobs, up to `limit`, and their status.
_CANDIDATES = (
    select(SegmentRow.id, SegmentRow.status)
    .join(FileJobRow, FileJobRow.instance_id == SegmentRow.instance_id)
    .where(FileJobRow.state == "running", _FREE)
    .order_by(SegmentRow.instance_id, SegmentRow.seq)
    .limit(bindparam("limit", type_=Integer))
)
#: The candidates that are still free, taken by `holder` until `until`.
_TAKE = (
    update(SegmentRow)
    .where(SegmentRow.id.in_(bindparam("ids", expanding=True)), _FREE)
    .values(
        status="sending",
        owner=_HOLDER,
        lease_until=bindparam("until", type_=DateTime(timezone=True)),
        attempts=SegmentRow.attempts + 1,
        # The status before this update: sending under a lapsed lease, its call may have
        # reached CPMCS before its holder stopped.
        sent_again=or_(SegmentRow.sent_again, SegmentRow.status == "sending"),
    )
    .returning(
        SegmentRow.id,
        SegmentRow.instance_id,
        SegmentRow.seq,
        SegmentRow.first_line,
        SegmentRow.row_count,
        SegmentRow.rows_zlib,
    )
)
#: Segments tried again after a try whose answer was lost.
SENT_AGAIN_MARK = (
    update(SegmentRow)
    .where(SegmentRow.id.in_(bindparam("ids", expanding=True)), SegmentRow.owner == _HOLDER)
    .values(sent_again=True)
)
#: How many of an instance's segments were sent again when CPMCS may have had them.
SENT_AGAIN = select(func.count()).where(
    SegmentRow.instance_id == bindparam("instance_id", type_=String), SegmentRow.sent_again
)
#: The number of an instance's last activity.
_LAST_ACTIVITY = select(func.coalesce(func.max(ActivityRow.seq), 0)).where(
    ActivityRow.instance_id == bindparam("instance_id", type_=String)
)
_ADD_ACTIVITY = insert(ActivityRow)


class SegmentRounds:
    """A worker's round of statements on segments, built once with bound parameters (built
    again for each round they cost more CPU than the database took to run them): results
    recorded, claims not to be sent given back, more segments claimed."""

    def __init__(self, *, postgres: bool, jobs: dict[str, KeptJob]) -> None:
        self._candidates = (
            _CANDIDATES.with_for_update(of=SegmentRow, skip_locked=True)
            if postgres
            else _CANDIDATES
        )
        #: Each job's flow, message and trace, by instance id, shared with the store that owns it.
        self._jobs = jobs

    def run(
        self,
        connection: Connection,
        *,
        owner: str,
        lease: timedelta,
        results: Sequence[SegmentResult],
        limit: int,
        released: Sequence[int],
    ) -> tuple[bool, list[ClaimedSegment]]:
        if released:
            connection.execute(_RELEASE, {"ids": released, "holder": owner})
        _record_results(connection, owner, results)
        claimed = self._claim(connection, owner, lease, limit) if limit > 0 else []
        # A run this round has just claimed a segment of is not over: no need to look.
        finishing = {result.segment.instance_id for result in results} - {
            segment.instance_id for segment in claimed
        }
        due = bool(finishing) and bool(
            connection.execute(_FINISH_RUNS_OF, {"jobs": sorted(finishing), "now": utcnow()}).all()
        )
        return due, claimed

    def _claim(
        self, connection: Connection, owner: str, lease: timedelta, limit: int
    ) -> list[ClaimedSegment]:
        now = utcnow()
        # Selected first, not as a subquery of the update: PostgreSQL can run a subquery
        # under IN once per row, and then its LIMIT limits nothing.
        candidates = connection.execute(self._candidates, {"now": now, "limit": limit}).all()
        if not candidates:
            return []
        ids = [candidate.id for candidate in candidates]
        lapsed = {candidate.id for candidate in candidates if candidate.status == "sending"}
        taken = connection.execute(
            _TAKE, {"ids": ids, "now": now, "holder": owner, "until": now + lease}
        ).all()
        unknown = {row.instance_id for row in taken} - self._jobs.keys()
        if unknown:
            jobs = connection.execute(
                select(
                    FileJobRow.instance_id,
                    FileJobRow.flow,
                    FileJobRow.message,
                    InstanceRow.trace_id,
                    InstanceRow.trace_span_id,
                )
                .join(InstanceRow, InstanceRow.id == FileJobRow.instance_id)
                .where(FileJobRow.instance_id.in_(unknown))
            )
            self._jobs |= {
                instance_id: (flow, message, kept_ref(trace_id, span_id))
                for instance_id, flow, message, trace_id, span_id in jobs
            }
        return [
            ClaimedSegment(
                id=row.id,
                instance_id=row.instance_id,
                flow=self._jobs[row.instance_id][0],
                message=self._jobs[row.instance_id][1],
                seq=row.seq,
                first_line=row.first_line,
                row_count=row.row_count,
                rows_zlib=row.rows_zlib,
                taken_over=row.id in lapsed,
                trace=self._jobs[row.instance_id][2],
            )
            for row in sorted(taken, key=lambda r: (r.instance_id, r.seq))
        ]


def _record_results(connection: Connection, owner: str, results: Sequence[SegmentResult]) -> None:
    """The segments' results; a failure stops its job's other segments from going."""
    accepted = [result.segment.id for result in results if result.error is None]
    if accepted:
        connection.execute(_ACCEPT, {"ids": accepted, "holder": owner})
    sent_again = [result.segment.id for result in results if result.sent_again]
    if sent_again:
        connection.execute(SENT_AGAIN_MARK, {"ids": sent_again, "holder": owner})
    activities: dict[str, list[Activity]] = {}
    for result in results:
        segment = result.segment
        if result.error is not None:
            connection.execute(
                update(SegmentRow)
                .where(SegmentRow.id == segment.id, SegmentRow.owner == owner)
                .values(status="failed", error=result.error, lease_until=None)
            )
            connection.execute(
                update(FileJobRow)
                .where(
                    FileJobRow.instance_id == segment.instance_id,
                    FileJobRow.state == "running",
                )
                .values(
                    state="failing", failure=result.failure or result.error, updated_at=utcnow()
                )
            )
        activities.setdefault(segment.instance_id, []).extend(result.activities)
    for instance_id, entries in activities.items():
        add_activities(connection, instance_id, entries)


def _finish_runs(which: Any) -> Any:
    """The update that makes a run's acknowledgement due once none of its segments is
    left to go (a failing run: once none is still in flight), returning the outcome (ERROR
    when rows were set aside); `now` is bound when it runs."""
    now = _NOW
    job = FileJobRow.instance_id
    # One status per EXISTS, so that SQLite finds the few pending or sending rows through
    # ix_segments_status: under an OR it walks every segment of the file by instance_id
    # instead, following each row's overflow pages (about 15 ms a call at 1,000 segments
    # of 1,000 rows, bench/device_reservation.py).
    in_flight = exists().where(
        SegmentRow.instance_id == job,
        SegmentRow.status == "sending",
        _live(SegmentRow.lease_until, now),
    )
    pending = exists().where(SegmentRow.instance_id == job, SegmentRow.status == "pending")
    # A running run's segment left sending under a lapsed lease (its worker died) is still
    # to go: another worker claims it again, so the run is not over while any is sending.
    sending = exists().where(SegmentRow.instance_id == job, SegmentRow.status == "sending")
    return (
        update(FileJobRow)
        .where(
            which,
            or_(
                and_(FileJobRow.state == "running", ~pending, ~sending),
                and_(FileJobRow.state == "failing", ~in_flight),
            ),
        )
        .values(
            state="acking",
            outcome=case(
                (FileJobRow.state == "failing", "FAILURE"),
                (FileJobRow.rows_set_aside > 0, "ERROR"),
                else_="SUCCESS",
            ),
            owner=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(FileJobRow.outcome)
    )


def add_activities(
    connection: Connection, instance_id: str, activities: Sequence[Activity]
) -> None:
    """Activities written as a file run goes, numbered after those already kept."""
    if not activities:
        return
    last = connection.scalar(_LAST_ACTIVITY, {"instance_id": instance_id})
    connection.execute(
        _ADD_ACTIVITY,
        [
            {"instance_id": instance_id, "seq": (last or 0) + n, **vars(activity)}
            for n, activity in enumerate(activities, start=1)
        ],
    )


#: The runs among `jobs` that are over, made due.
_FINISH_RUNS_OF = _finish_runs(FileJobRow.instance_id.in_(bindparam("jobs", expanding=True)))
#: Any run that is over, made due.
FINISH_STALLED = _finish_runs(FileJobRow.instance_id.is_not(None))
