"""Queries on file jobs and their segments: intake, claims under a lease, results, resume.

A job is claimed as `store/leases.py` claims a row. Segments are claimed the same way
(a conditional update, the candidates selected FOR UPDATE SKIP LOCKED on PostgreSQL),
but many at a time, in a worker's round of statements built once.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from derms_bridge.schemas.ops import Activity, FileProgress, SetAsideRow
from derms_bridge.store.file_job_records import (
    SEGMENT_SPOOL_BYTES,
    ClaimedJob,
    ClaimedSegment,
    NewFile,
    NewSegment,
    SegmentResult,
    SetAside,
    spool_segment,
    spooled_segments,
)
from derms_bridge.store.instances import InstanceStore, payload_kept, reopen, utcnow
from derms_bridge.store.leases import Leases
from derms_bridge.store.segment_rounds import (
    FINISH_STALLED,
    SENT_AGAIN,
    KeptJob,
    SegmentRounds,
    add_activities,
)
from derms_bridge.store.tables import FileJobRow, InstanceRow, SegmentRow
from derms_bridge.tracing import kept_ref

_T = TypeVar("_T")


class FileJobStore:
    def __init__(self, instances: InstanceStore) -> None:
        self._instances = instances
        self._postgres = instances.engine.dialect.name == "postgresql"
        self._leases = Leases(FileJobRow, postgres=self._postgres)
        #: Each job's flow and message, by instance id, as claims find them: they never change.
        self._jobs: dict[str, KeptJob] = {}
        self._rounds = SegmentRounds(postgres=self._postgres, jobs=self._jobs)

    async def receive(
        self,
        file: NewFile,
        segments: AsyncIterator[NewSegment],
        set_aside: Callable[[], SetAside],
    ) -> tuple[int, int]:
        """Write the file's instance, every segment and the queued job with the rows set
        aside (`set_aside`, asked once `segments` have ended), in one transaction; (rows,
        segments). An error raised by `segments` leaves nothing written."""
        if not self._postgres:
            # SQLite lets one writer in at a time, and the others, in this process and in
            # any other, wait for as long as a transaction writes: the segments wait in a
            # spool until the upload has ended, however slowly it comes.
            with tempfile.SpooledTemporaryFile(max_size=SEGMENT_SPOOL_BYTES) as spool:
                async for segment in segments:
                    spool_segment(spool, segment)
                return await self._keep(file, spooled_segments(spool), set_aside)
        return await self._keep(file, segments, set_aside)

    async def _keep(
        self,
        file: NewFile,
        segments: AsyncIterator[NewSegment],
        set_aside: Callable[[], SetAside],
    ) -> tuple[int, int]:
        rows = count = 0

        async def keep(connection: AsyncConnection) -> None:
            nonlocal rows, count
            batch: list[dict[str, Any]] = []
            async for segment in segments:
                rows += segment.row_count
                count += 1
                batch.append(
                    {
                        "instance_id": file.instance_id,
                        "status": "pending",
                        "attempts": 0,
                        **vars(segment),
                    }
                )
                if len(batch) >= 20:
                    await connection.execute(insert(SegmentRow), batch)
                    batch = []
            if batch:
                await connection.execute(insert(SegmentRow), batch)
            await connection.execute(
                insert(FileJobRow).values(
                    instance_id=file.instance_id,
                    flow=file.flow,
                    message=file.message,
                    state="queued",
                    run=1,
                    total_rows=rows,
                    total_segments=count,
                    derms_connection=file.derms_connection,
                    updated_at=utcnow(),
                    **set_aside().columns(),
                )
            )

        await self._create(file, keep)
        return rows, count

    async def nothing_to_send(self, file: NewFile, set_aside: SetAside) -> None:
        """Write the instance of a file with no row to send (none, or every one set aside),
        its ERROR acknowledgement due at once, in one transaction."""

        async def nothing(connection: AsyncConnection) -> None:
            await connection.execute(
                insert(FileJobRow).values(
                    instance_id=file.instance_id,
                    flow=file.flow,
                    message=file.message,
                    state="acking",
                    outcome="ERROR",
                    run=1,
                    total_rows=0,
                    total_segments=0,
                    derms_connection=file.derms_connection,
                    updated_at=utcnow(),
                    **set_aside.columns(),
                )
            )

        await self._create(file, nothing)

    async def _create(
        self, file: NewFile, alongside: Callable[[AsyncConnection], Awaitable[None]]
    ) -> None:
        await self._instances.create(
            instance_id=file.instance_id,
            flow=file.flow,
            caller=file.caller,
            payload=file.message,
            keys=file.keys,
            resubmit_of=file.resubmit_of,
            alongside=alongside,
            trace=file.trace,
        )

    async def claim_job(self, owner: str, lease: timedelta) -> ClaimedJob | None:
        """A job whose health check or acknowledgement is due, and free or abandoned."""
        now = utcnow()
        due = and_(
            FileJobRow.state.in_(("queued", "acking", "acking_again")),
            or_(FileJobRow.lease_until.is_(None), FileJobRow.lease_until < now),
        )
        if not await self._leases.any_due(self._instances.engine, due):
            return None
        async with self._instances.writing() as connection:
            claimed = await self._leases.claim(
                connection,
                due,
                owner=owner,
                until=now + lease,
                returning=(
                    FileJobRow.flow,
                    FileJobRow.message,
                    FileJobRow.state,
                    FileJobRow.outcome,
                    FileJobRow.failure,
                    FileJobRow.run,
                    FileJobRow.total_rows,
                    FileJobRow.total_segments,
                    FileJobRow.derms_connection,
                    FileJobRow.ack,
                    FileJobRow.rows_set_aside,
                ),
            )
            if claimed is None:
                return None
            # Only the acknowledgement says it: a health check has sent nothing yet.
            sent_again = (
                await connection.scalar(SENT_AGAIN, {"instance_id": claimed.instance_id})
                if claimed.state == "acking"
                else 0
            )
            traced = (
                await connection.execute(
                    select(InstanceRow.trace_id, InstanceRow.trace_span_id).where(
                        InstanceRow.id == claimed.instance_id
                    )
                )
            ).one()
        return ClaimedJob(
            **claimed._mapping, segments_sent_again=sent_again or 0, trace=kept_ref(*traced)
        )

    async def renew_job(self, owner: str, lease: timedelta, instance_id: str) -> None:
        """Extend a job's claim still held, so that slow work is not taken up a second time."""
        async with self._instances.writing() as connection:
            await self._leases.renew(connection, instance_id, owner, utcnow() + lease)

    async def renew_segments(self, owner: str, lease: timedelta, ids: Sequence[int]) -> None:
        """Extend the claims of the segments `owner` holds, sending or claimed ahead, in one
        statement: the worker's, instead of one a segment."""
        async with self._instances.writing() as connection:
            await connection.execute(
                update(SegmentRow)
                .where(
                    SegmentRow.id.in_(ids),
                    SegmentRow.owner == owner,
                    SegmentRow.status == "sending",
                )
                .values(lease_until=utcnow() + lease)
            )

    async def give_back_job(self, instance_id: str, owner: str) -> None:
        """A job whose step was cut short by its worker's stop: due at once for another."""
        async with self._instances.writing() as connection:
            await self._leases.release(connection, instance_id, owner)

    async def start_sending(self, instance_id: str, owner: str) -> None:
        async with self._instances.writing() as connection:
            await self._leases.release(
                connection, instance_id, owner, state="running", updated_at=utcnow()
            )

    async def fail_before_sending(self, instance_id: str, owner: str, failure: str) -> None:
        async with self._instances.writing() as connection:
            await connection.execute(
                update(FileJobRow)
                .where(FileJobRow.instance_id == instance_id, FileJobRow.owner == owner)
                .values(state="acking", outcome="FAILURE", failure=failure, updated_at=utcnow())
            )

    async def record_and_claim(
        self,
        owner: str,
        lease: timedelta,
        results: Sequence[SegmentResult],
        limit: int,
        released: Sequence[int] = (),
    ) -> tuple[bool, list[ClaimedSegment]]:
        """Record finished segments, give back claimed ones that will not be sent
        (`released`), and claim up to `limit` more, in one transaction: on SQLite every
        write of a process queues behind one lock, so a worker's round of results and
        claims is one write instead of one per segment, in one call off the event loop.
        True when an acknowledgement fell due."""
        round_ = functools.partial(
            self._rounds.run,
            owner=owner,
            lease=lease,
            results=results,
            limit=limit,
            released=released,
        )
        return await self._instances.in_one_call(round_)

    async def finish_stalled(self) -> int:
        """Make due the acknowledgement of any run with nothing left to send. Recording a
        segment does this for its own run; on PostgreSQL two workers recording a run's
        last two segments at once can each still see the other's as sending, so a
        worker's round sweeps up after them."""
        under_way = FileJobRow.state.in_(("running", "failing"))
        if not await self._leases.any_due(self._instances.engine, under_way):
            return 0
        async with self._instances.writing() as connection:
            return len((await connection.execute(FINISH_STALLED, {"now": utcnow()})).all())

    async def acknowledged(
        self,
        job: ClaimedJob,
        owner: str,
        *,
        ack: Any,
        ack_error: str | None,
        activities: Sequence[Activity],
    ) -> None:
        """The run is over: the job done with the MsgAck it sent, the instance succeeded
        (acknowledged SUCCESS) or failed (FAILURE, or ERROR: rows set aside)."""
        await self._close(job, owner, ack_error, activities, ack=ack)

    async def acknowledged_again(
        self, job: ClaimedJob, owner: str, *, ack_error: str | None, activities: Sequence[Activity]
    ) -> None:
        """The run's acknowledgement went again: the job done, the instance succeeded or
        failed as DERMS took it this time."""
        await self._close(job, owner, ack_error, activities)

    async def acknowledge_again(self, instance_id: str) -> bool:
        """Make due the sending again of a finished run's acknowledgement, as it was sent.
        False when the job's run is not finished, or sent none."""
        async with self._instances.writing() as connection:
            due = await connection.execute(
                update(FileJobRow)
                .where(
                    FileJobRow.instance_id == instance_id,
                    FileJobRow.state == "done",
                    FileJobRow.ack.is_not(None),
                )
                .values(state="acking_again", owner=None, lease_until=None, updated_at=utcnow())
            )
        return bool(due.rowcount)

    async def _close(
        self,
        job: ClaimedJob,
        owner: str,
        ack_error: str | None,
        activities: Sequence[Activity],
        **recorded: Any,
    ) -> None:
        now = utcnow()
        succeeded = job.outcome == "SUCCESS" and ack_error is None
        async with self._instances.writing() as connection:
            closed = await self._leases.release(
                connection,
                job.instance_id,
                owner,
                state="done",
                ack_error=ack_error,
                updated_at=now,
                **recorded,
            )
            if not closed:
                # The claim was lost (its lease ran out): whoever holds it now finishes.
                return
            self._jobs.pop(job.instance_id, None)
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == job.instance_id)
                .values(
                    status="succeeded" if succeeded else "failed",
                    error=None
                    if succeeded
                    else (ack_error or job.failure or f"{job.rows_set_aside} rows set aside"),
                    updated_at=now,
                    finished_at=now,
                )
            )
            await connection.run_sync(add_activities, job.instance_id, activities)

    async def add_activities(self, instance_id: str, activities: Sequence[Activity]) -> None:
        async with self._instances.writing() as connection:
            await connection.run_sync(add_activities, instance_id, activities)

    async def resume(self, instance_id: str) -> bool:
        """A failed run's file runs again: its segments not accepted go, once more, then one
        acknowledgement. False when the job is still running, or succeeded."""
        now = utcnow()
        async with self._instances.writing() as connection:
            resumed = (
                await connection.execute(
                    update(FileJobRow)
                    .where(
                        FileJobRow.instance_id == instance_id,
                        # Acknowledging: DERMS may resend as soon as it has the FAILURE,
                        # before the worker that sent it has recorded it. The resend takes
                        # the job from that worker, whose claim is then lost: it records
                        # nothing over the run now under way.
                        FileJobRow.state.in_(("done", "acking")),
                        FileJobRow.outcome == "FAILURE",
                        payload_kept(instance_id),
                    )
                    .values(
                        state="queued",
                        outcome=None,
                        failure=None,
                        ack_error=None,
                        run=FileJobRow.run + 1,
                        owner=None,
                        lease_until=None,
                        updated_at=now,
                    )
                    .returning(FileJobRow.run)
                )
            ).first()
            if resumed is None:
                return False
            await connection.execute(
                update(SegmentRow)
                .where(SegmentRow.instance_id == instance_id, SegmentRow.status == "failed")
                .values(status="pending", error=None)
            )
            await reopen(connection, instance_id, now)
        return True

    async def has_segments(self, instance_id: str) -> bool | None:
        """Whether a job keeps any segments; None when there is no job."""
        async with self._instances.engine.connect() as connection:
            total = await connection.scalar(
                select(FileJobRow.total_segments).where(FileJobRow.instance_id == instance_id)
            )
        return None if total is None else total > 0

    async def set_aside_named(self, instance_id: str) -> list[SetAsideRow]:
        """The first SET_ASIDE_NAMED rows the job set aside."""
        async with self._instances.engine.connect() as connection:
            named = await connection.scalar(
                select(FileJobRow.set_aside).where(FileJobRow.instance_id == instance_id)
            )
        return [SetAsideRow(**row) for row in named or []]

    async def set_aside_lines(self, instance_id: str) -> tuple[str, bytes | None] | None:
        """The job's flow and every row it set aside as it came (CSV lines, zlib-compressed;
        None when it set none aside, or kept none: a file refused before they were kept);
        None when there is no job."""
        async with self._instances.engine.connect() as connection:
            found = (
                await connection.execute(
                    select(FileJobRow.flow, FileJobRow.set_aside_zlib).where(
                        FileJobRow.instance_id == instance_id
                    )
                )
            ).first()
        return None if found is None else (found.flow, found.set_aside_zlib)

    async def progress(self, instance_id: str) -> FileProgress | None:
        async with self._instances.engine.connect() as connection:
            job = (
                await connection.execute(
                    select(FileJobRow).where(FileJobRow.instance_id == instance_id)
                )
            ).first()
            if job is None:
                return None
            counts = dict(
                (
                    await connection.execute(
                        select(SegmentRow.status, func.count())
                        .where(SegmentRow.instance_id == instance_id)
                        .group_by(SegmentRow.status)
                    )
                ).all()
            )
            sent_again = await connection.scalar(SENT_AGAIN, {"instance_id": instance_id})
            rows_sent = await connection.scalar(
                select(func.coalesce(func.sum(SegmentRow.row_count), 0)).where(
                    SegmentRow.instance_id == instance_id, SegmentRow.status == "accepted"
                )
            )
            errors = (
                await connection.execute(
                    select(SegmentRow.seq, SegmentRow.first_line, SegmentRow.error)
                    .where(SegmentRow.instance_id == instance_id, SegmentRow.error.is_not(None))
                    .order_by(SegmentRow.seq)
                    .limit(20)
                )
            ).all()
        return FileProgress(
            state=job.state,
            run=job.run,
            outcome=job.outcome,
            failure=job.failure,
            rows_set_aside=job.rows_set_aside,
            set_aside=[SetAsideRow(**row) for row in job.set_aside or []],
            total_rows=job.total_rows,
            segments={
                s: int(counts.get(s, 0)) for s in ("pending", "sending", "accepted", "failed")
            },
            rows_sent=int(rows_sent or 0),
            segments_sent_again=int(sent_again or 0),
            segment_errors=[
                f"segment {seq} (from line {line}): {error}" for seq, line, error in errors
            ],
            ack_error=job.ack_error,
            derms_connection=job.derms_connection,
        )
