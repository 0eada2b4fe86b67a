"""The purge's queries: what expired, and its removal one short transaction at a time.

A batch first reads at most `batch_size` instances that expired, without writing; then
one short transaction takes those of them that still qualify and removes them (or their
payloads), so that it holds locks for milliseconds whatever the table's size, and a
search that finds nothing never takes SQLite's one writer. On PostgreSQL that
transaction takes the instances `FOR UPDATE SKIP LOCKED`, then locks their file jobs and
staged files, so that a resubmit or a resumed file going on beside it is either waited
for or left alone, never half removed. Whatever must read the rows before they go (an
archive) reads the batch between the two steps: the transaction removes no instance
that was not read.

What stays whatever its age: an instance in progress; a file job not done or a staged
file not transferred; an instance a kept instance names (the run that resubmitted it,
a child of it), which goes with or after that one; a schedule's last or running run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from derms_bridge.store.instances import InstanceStore, as_utc
from derms_bridge.store.tables import (
    ActivityRow,
    BusinessKeyRow,
    ErrorNoticeRow,
    FileJobRow,
    InstanceRow,
    ScheduleRow,
    ScheduleTickRow,
    SegmentRow,
    StagedChunkRow,
    StagedFileRow,
)


@dataclass(frozen=True)
class Expiry:
    """The instances of some flows and statuses that ended before `before`."""

    flows: tuple[str, ...]
    statuses: tuple[str, ...]
    before: datetime


#: Rows removed per table in one batch.
Removed = dict[str, int]

#: Given a batch's instances as `RetentionStore.archived` reads them, before they go; the
#: batch stays when it raises.
Archiving = Callable[[list[dict[str, Any]]], Awaitable[object]]


def _ended(expiry: Expiry) -> list[ColumnElement[bool]]:
    return [
        InstanceRow.flow.in_(expiry.flows),
        InstanceRow.status.in_(expiry.statuses),
        InstanceRow.finished_at < expiry.before,
    ]


def _work_finished() -> list[ColumnElement[bool]]:
    """No file job still going (or acknowledging) and no staged file still to transfer."""
    return [
        ~exists().where(FileJobRow.instance_id == InstanceRow.id, FileJobRow.state != "done"),
        ~exists().where(
            StagedFileRow.instance_id == InstanceRow.id,
            StagedFileRow.state.in_(("queued", "running")),
        ),
    ]


def _named_by_nothing_kept() -> list[ColumnElement[bool]]:
    """No later run, child or schedule names the instance: a link never dangles."""
    other = aliased(InstanceRow)
    return [
        ~exists().where(other.resubmit_of == InstanceRow.id),
        ~exists().where(other.parent_id == InstanceRow.id),
        ~exists().where(
            or_(
                ScheduleRow.last_instance == InstanceRow.id,
                ScheduleRow.running_instance == InstanceRow.id,
            )
        ),
    ]


def _payload_expired(expiry: Expiry) -> list[ColumnElement[bool]]:
    return [*_ended(expiry), InstanceRow.payload_purged_at.is_(None), *_work_finished()]


def _instance_expired(expiry: Expiry) -> list[ColumnElement[bool]]:
    return [*_ended(expiry), *_work_finished(), *_named_by_nothing_kept()]


def _in_utc(row: RowMapping) -> dict[str, Any]:
    """The row's values, its times in UTC (SQLite gives them back without a zone)."""
    return {
        column: as_utc(value) if isinstance(value, datetime) else value
        for column, value in row.items()
    }


class RetentionStore:
    def __init__(self, instances: InstanceStore, batch_size: int) -> None:
        self._instances = instances
        self.batch_size = batch_size
        self._postgres = instances.engine.dialect.name == "postgresql"
        #: SQLite lets one writer in at a time, whichever process: the purge leaves it free
        #: between its batches.
        self.rests_between_batches = not self._postgres

    async def purge_payloads(
        self, expiry: Expiry, now: datetime, archive: Archiving | None = None
    ) -> Removed:
        """One batch: the payload, reply and rows set aside of instances whose payloads
        expired are emptied, and the instances marked, so that their file rows go next
        (`delete_file_rows`) and no resubmit starts from what is gone. Empty: none left (or
        none of those found may go now: the next run sees them again)."""

        async def empty_payloads(connection: AsyncConnection, ids: list[str]) -> Removed:
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id.in_(ids))
                .values(payload=None, reply=None, payload_purged_at=now)
            )
            await connection.execute(
                update(FileJobRow)
                .where(FileJobRow.instance_id.in_(ids))
                .values(set_aside=None, set_aside_zlib=None)
            )
            await connection.execute(
                update(StagedFileRow)
                .where(StagedFileRow.instance_id.in_(ids))
                .values(chunks_kept=False)
            )
            return {"instances": len(ids)}

        return await self._batch(_payload_expired(expiry), archive, empty_payloads)

    async def delete_file_rows(self) -> Removed:
        """One batch of the file rows (segments, staged chunks) of instances whose payloads
        were purged. Empty: none left."""
        purged = InstanceRow.payload_purged_at.is_not(None)
        waiting = await self.count_file_rows(limit=1)
        if not any(waiting.values()):
            return {}
        async with self._instances.writing() as connection:
            segment_ids = (
                await connection.scalars(
                    select(SegmentRow.id)
                    .join(InstanceRow, InstanceRow.id == SegmentRow.instance_id)
                    .where(purged)
                    .limit(self.batch_size)
                )
            ).all()
            removed: Removed = {}
            if segment_ids:
                deleted = await connection.execute(
                    delete(SegmentRow).where(SegmentRow.id.in_(segment_ids))
                )
                removed["segments"] = deleted.rowcount
            chunk_keys = (
                await connection.execute(
                    select(StagedChunkRow.instance_id, StagedChunkRow.seq)
                    .join(InstanceRow, InstanceRow.id == StagedChunkRow.instance_id)
                    .where(purged)
                    .limit(self.batch_size)
                )
            ).all()
            if chunk_keys:
                deleted = await connection.execute(
                    delete(StagedChunkRow).where(
                        tuple_(StagedChunkRow.instance_id, StagedChunkRow.seq).in_(
                            [tuple(key) for key in chunk_keys]
                        )
                    )
                )
                removed["staged_file_chunks"] = deleted.rowcount
        return removed

    async def delete_instances(self, expiry: Expiry, archive: Archiving | None = None) -> Removed:
        """One batch of expired instances, deleted with every row of theirs, counted by
        table. Empty: none left (or none of those found may go now)."""
        return await self._batch(_instance_expired(expiry), archive, _delete_with_rows)

    async def delete_skipped_ticks(self, flows: tuple[str, ...], before: datetime) -> Removed:
        """One batch of the schedule ticks of `flows` before `before` that started no run
        (the previous run was still going); a tick that started a run goes with its
        instance. Empty: none left."""
        async with self._instances.writing() as connection:
            keys = (
                await connection.execute(
                    select(ScheduleTickRow.flow, ScheduleTickRow.tick)
                    .where(*_skipped_before(flows, before))
                    .limit(self.batch_size)
                )
            ).all()
            if not keys:
                return {}
            deleted = await connection.execute(
                delete(ScheduleTickRow).where(
                    tuple_(ScheduleTickRow.flow, ScheduleTickRow.tick).in_(
                        [tuple(key) for key in keys]
                    )
                )
            )
        return {"schedule_ticks": deleted.rowcount}

    async def count_skipped_ticks(self, flows: tuple[str, ...], before: datetime) -> int:
        """The skipped ticks `delete_skipped_ticks` would remove now."""
        async with self._instances.engine.connect() as connection:
            found = await connection.scalar(
                select(func.count()).where(*_skipped_before(flows, before))
            )
            return found or 0

    async def archived(self, ids: list[str]) -> list[dict[str, Any]]:
        """The instances as an archive keeps them: every column of theirs, with their
        business keys and their activities in order (file rows are left out)."""
        async with self._instances.engine.connect() as connection:
            instances = (
                await connection.execute(select(InstanceRow).where(InstanceRow.id.in_(ids)))
            ).mappings()
            records = {
                row["id"]: {**_in_utc(row), "business_keys": [], "activities": []}
                for row in instances
            }
            keys = await connection.execute(
                select(BusinessKeyRow.instance_id, BusinessKeyRow.kind, BusinessKeyRow.value)
                .where(BusinessKeyRow.instance_id.in_(ids))
                .order_by(BusinessKeyRow.id)
            )
            for instance_id, kind, value in keys.all():
                records[instance_id]["business_keys"].append({"kind": kind, "value": value})
            activities = (
                await connection.execute(
                    select(ActivityRow)
                    .where(ActivityRow.instance_id.in_(ids))
                    .order_by(ActivityRow.instance_id, ActivityRow.seq)
                )
            ).mappings()
            for activity in activities:
                record = {
                    k: v for k, v in _in_utc(activity).items() if k not in ("id", "instance_id")
                }
                records[activity["instance_id"]]["activities"].append(record)
        return list(records.values())

    async def count_payloads(self, expiry: Expiry) -> dict[str, int]:
        """Per flow, the payloads that would be purged now."""
        return await self._count(_payload_expired(expiry))

    async def count_instances(self, expiry: Expiry) -> dict[str, int]:
        """Per flow, the instances that would go now; one named by an instance that expires
        too goes after it, in the same purge, and is not counted here."""
        return await self._count(_instance_expired(expiry))

    async def count_file_rows(self, limit: int | None = None) -> Removed:
        """File rows of purged payloads still to delete (counted up to `limit` a table)."""
        purged = InstanceRow.payload_purged_at.is_not(None)
        segments = (
            select(SegmentRow.id)
            .join(InstanceRow, InstanceRow.id == SegmentRow.instance_id)
            .where(purged)
            .limit(limit)
        )
        chunks = (
            select(StagedChunkRow.seq)
            .join(InstanceRow, InstanceRow.id == StagedChunkRow.instance_id)
            .where(purged)
            .limit(limit)
        )
        async with self._instances.engine.connect() as connection:
            return {
                "segments": await _count_of(connection, segments),
                "staged_file_chunks": await _count_of(connection, chunks),
            }

    async def _count(self, conditions: list[ColumnElement[bool]]) -> dict[str, int]:
        async with self._instances.engine.connect() as connection:
            rows = await connection.execute(
                select(InstanceRow.flow, func.count()).where(*conditions).group_by(InstanceRow.flow)
            )
            return {flow: count for flow, count in rows.all()}

    async def _batch(
        self,
        conditions: list[ColumnElement[bool]],
        archive: Archiving | None,
        remove: Callable[[AsyncConnection, list[str]], Awaitable[Removed]],
    ) -> Removed:
        """One batch of what the conditions select: archived first when asked, then removed
        in a short transaction of its own, those that still qualify only. Empty: none
        left (or none of those found may go now: the next run sees them again)."""
        found = await self._found(conditions)
        if not found:
            return {}
        if archive is not None:
            await archive(await self.archived(found))
        async with self._instances.writing() as connection:
            ids = await self._still_expired(connection, conditions, found)
            return await remove(connection, ids) if ids else {}

    async def _found(self, conditions: list[ColumnElement[bool]]) -> list[str]:
        """At most a batch of the instances the conditions select, read without a lock; in
        no order, which would make the database sort every match to pick a batch."""
        async with self._instances.engine.connect() as connection:
            found = await connection.scalars(
                select(InstanceRow.id).where(*conditions).limit(self.batch_size)
            )
            return list(found)

    async def _still_expired(
        self, connection: AsyncConnection, conditions: list[ColumnElement[bool]], found: list[str]
    ) -> list[str]:
        """Those of `found` the conditions still select, in the removing transaction; on
        PostgreSQL locked, with their file jobs and staged files, and checked again."""
        query = select(InstanceRow.id).where(InstanceRow.id.in_(found), *conditions)
        if not self._postgres:
            return list(await connection.scalars(query))
        ids = list(
            await connection.scalars(query.with_for_update(of=InstanceRow, skip_locked=True))
        )
        if not ids:
            return ids
        # A file resumed (or a transfer) committed between the search and the lock is
        # seen now that its row is locked: its instance stays.
        jobs = (
            await connection.execute(
                select(FileJobRow.instance_id, FileJobRow.state)
                .where(FileJobRow.instance_id.in_(ids))
                .with_for_update()
            )
        ).all()
        busy = {instance_id for instance_id, state in jobs if state != "done"}
        staged = (
            await connection.execute(
                select(StagedFileRow.instance_id, StagedFileRow.state)
                .where(StagedFileRow.instance_id.in_(ids))
                .with_for_update()
            )
        ).all()
        busy |= {instance_id for instance_id, state in staged if state in ("queued", "running")}
        return [each for each in ids if each not in busy]


def _skipped_before(flows: tuple[str, ...], before: datetime) -> list[ColumnElement[bool]]:
    return [
        ScheduleTickRow.instance_id.is_(None),
        ScheduleTickRow.flow.in_(flows),
        ScheduleTickRow.tick < before,
    ]


async def _count_of(connection: AsyncConnection, rows: Select[Any]) -> int:
    found = await connection.scalar(select(func.count()).select_from(rows.subquery()))
    return found or 0


#: The tables whose rows name an instance by `instance_id`: deleted before the instance.
_ROWS_OF_AN_INSTANCE = (
    BusinessKeyRow,
    ActivityRow,
    ErrorNoticeRow,
    SegmentRow,
    FileJobRow,
    StagedChunkRow,
    StagedFileRow,
    ScheduleTickRow,
)


async def _delete_with_rows(connection: AsyncConnection, ids: list[str]) -> Removed:
    """The instances deleted with every row of theirs, counted by table."""
    statements: list[tuple[str, Delete]] = [
        (rows.__tablename__, delete(rows).where(rows.instance_id.in_(ids)))
        for rows in _ROWS_OF_AN_INSTANCE
    ]
    statements.append(("instances", delete(InstanceRow).where(InstanceRow.id.in_(ids))))
    removed: Removed = {}
    for table, statement in statements:
        deleted = await connection.execute(statement)
        if deleted.rowcount:
            removed[table] = deleted.rowcount
    return removed
