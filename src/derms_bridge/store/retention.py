"""The purge's queries: what expired, and its removal one short transaction at a time.

A batch first reads at most `batch_size` instances that expired, without writing (whole
instances by their end alone, the oldest received first, each batch after the last); then
short transactions take those of them that still qualify and remove them (or their
payloads), so that locks are held for milliseconds whatever the table's size, and a
search that finds nothing never takes SQLite's one writer. Whatever must read the rows
before they go (an archive) reads the batch between the two steps: no instance is removed
that was not read.

On PostgreSQL a batch is one transaction. Payloads: the instances taken `FOR UPDATE SKIP
LOCKED` by their keys, then their file jobs and staged files locked, so that a resubmit or
a resumed file going on beside it is either waited for or left alone, never half removed;
then emptied. Whole instances: two statements (`_locked`, `_checked_and_deleted`). The
first locks the batch, by the search itself when no archive reads it first, and gives
back one row: the locked instances' ids and places (`ctid`) as PostgreSQL's array texts.
The second is given those texts as they came, locks the file jobs and staged files, reads
what names the instances, and deletes those that may go, by their places, with every row
of theirs (data-modifying `WITH` queries, so that a statement-level trigger on a table
fires once a batch), counting what went. Its checks start after the lock, so that they
see what committed before it; no row of a batch is read one by one in Python. Where ids
are bound from Python they go as one JSON array, read into an array by the server (`=
ANY(ARRAY(SELECT jsonb_array_elements_text(:ids)))`): the statement's text is the same
every batch, where an `IN` list of 1,000 values was a new statement to parse and plan
each time. No foreign key names `instances` there (migration 0020): their checks, eight
per deleted instance, took two thirds of the deleting statement's time.

On SQLite, where one writer goes at a time, a batch goes in slices, each a transaction of
its own run in one call off the event loop, checked as on PostgreSQL; a slice is sized for
about `SLICE_SECONDS` of statements, and between two slices the writes queued in this
process (the triggers' group commits) take their turn first. The ids go as one JSON
array, read by `json_each`.

What stays whatever its age: an instance in progress; a file job not done or a staged
file not transferred; an instance a kept instance names (the run that resubmitted it,
a child of it), which goes with or after that one; a schedule's last or running run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Connection,
    Select,
    String,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.elements import Label, UnaryExpression
from sqlalchemy.sql.operators import custom_op

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

#: How long the statements of a slice of a batch hold SQLite's one writer, about (its commit
#: comes on top, about a millisecond unsynced): a trigger's write that comes meanwhile waits
#: for them, and a trigger writes twice. At 20 ms the triggers' p99 rose by 75 to 115 ms
#: beside a purge, at 5 ms by 25 to 35 ms, at 3 ms by 11 to 15 ms, on 1,000,000 instances;
#: at 8 ms, when each slice's statements were built anew and its commit synced, a slice held
#: a few instances and the purge went at 220-310 a second (bench/README.md, store_scale.py).
SLICE_SECONDS = 0.003
#: The first slice's instances, before any slice was timed.
FIRST_SLICE = 50
#: After a slice, SQLite's writer is left free for this share of the slice's time: another
#: hub process sharing the file, whose writes wait in SQLite's busy handler (retrying after
#: 1, 2, 5, 10... ms) rather than in this process's queue, finds it free then.
REST_SHARE = 0.25


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


@dataclass(frozen=True)
class Taken:
    """The instances of a batch that still qualify, and those of them with a file job (and
    segments), or a staged file (and chunks): the only ones those tables have rows of."""

    ids: list[str]
    with_file_job: list[str]
    with_staged_file: list[str]


#: Removes what it is given of a batch, in the transaction of the connection; what went,
#: by table.
Removal = Callable[[Connection, Taken], Removed]


def _ended(expiry: Expiry, *, by_received: bool = False) -> list[ColumnElement[bool]]:
    """`by_received`: conditions that SQLite's planner cannot take an index for, so that
    it reads the instances by the index of received_at, in the order the search of whole
    instances asks for (`_whole_search`). Left free, it took the index of status and
    received_at and sorted every expired instance for each batch of 1,000: 42 ms a batch
    for a day's purge on 1,000,000 instances, 290 ms with 60 days expired at once, against
    2 ms (bench/README.md, "SQLite's purge: its floor, and its search")."""
    return [
        _term(InstanceRow.flow, by_received).in_(expiry.flows),
        _term(InstanceRow.status, by_received).in_(expiry.statuses),
        _term(InstanceRow.finished_at, by_received) < expiry.before,
    ]


_NO_OP_PLUS: custom_op[Any] = custom_op("+")
_V = TypeVar("_V")


def _term(column: InstrumentedAttribute[_V], unindexed: bool) -> ColumnElement[_V]:
    """`column`; `unindexed`, under SQLite's unary `+`, which leaves its value as it is and
    its term out of the planner's choice of an index (sqlite.org, optoverview.html,
    "Disqualifying WHERE clause terms using unary-+")."""
    found = column.expression
    return UnaryExpression(found, operator=_NO_OP_PLUS, type_=found.type) if unindexed else found


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


def _instance_expired(expiry: Expiry, *, by_received: bool = False) -> list[ColumnElement[bool]]:
    return [*_ended(expiry, by_received=by_received), *_work_finished(), *_named_by_nothing_kept()]


@dataclass(frozen=True)
class _Goes:
    """What a batch removes: the instances ended per `expiry` whose payload is kept still
    (`whole` False: the payload goes), or that nothing kept names (`whole`: all of it)."""

    expiry: Expiry
    whole: bool

    def conditions(self, *, by_received: bool = False) -> list[ColumnElement[bool]]:
        """`by_received`: of whole instances, as SQLite searches them (`_ended`)."""
        if self.whole:
            return _instance_expired(self.expiry, by_received=by_received)
        return _payload_expired(self.expiry)

    def ended(
        self,
        flow: str,
        status: str,
        finished_at: datetime | None,
        payload_purged_at: datetime | None,
    ) -> bool:
        """An instance of these values is one `conditions` select, but for what names it
        and its file work (read by statements of their own)."""
        expiry = self.expiry
        return (
            flow in expiry.flows
            and status in expiry.statuses
            and finished_at is not None
            and as_utc(finished_at) < expiry.before
            and (self.whole or payload_purged_at is None)
        )


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
        #: SQLite: the instances of the next slice, sized by the last one's time.
        self._slice = min(FIRST_SLICE, batch_size)
        #: Where the next batch's search of whole instances starts, by the flows and
        #: statuses it selects: after the last batch's last (received then, and its id), for
        #: the cut-off it was found under. Keyed without the cut-off, which every run moves,
        #: so that a run that stopped midway leaves no entry behind for good: the kinds of
        #: instances the settings expire bound it.
        self._next_after: dict[tuple[tuple[str, ...], tuple[str, ...]], _After] = {}

    async def purge_payloads(
        self, expiry: Expiry, now: datetime, archive: Archiving | None = None
    ) -> Removed:
        """One batch: the payload, reply and rows set aside of instances whose payloads
        expired are emptied, and the instances marked, so that their file rows go next
        (`delete_file_rows`) and no resubmit starts from what is gone. Empty: none left (or
        none of those found may go now: the next run sees them again)."""
        statements = _STATEMENTS[self._postgres]

        def empty_payloads(connection: Connection, taken: Taken) -> Removed:
            connection.execute(statements.empty_payloads, {**_bound(taken.ids), "now": now})
            if taken.with_file_job:
                connection.execute(statements.empty_set_aside, _bound(taken.with_file_job))
            if taken.with_staged_file:
                connection.execute(statements.unkeep_chunks, _bound(taken.with_staged_file))
            return {"instances": len(taken.ids)}

        return await self._batch(_Goes(expiry, whole=False), archive, empty_payloads)

    async def delete_file_rows(self) -> Removed:
        """One batch of the file rows (segments, staged chunks) of instances whose payloads
        were purged, each table's in one statement. Empty: none left."""
        waiting = await self.count_file_rows(limit=1)
        if not any(waiting.values()):
            return {}
        purged = InstanceRow.payload_purged_at.is_not(None)
        most = self.batch_size if self._postgres else self._slice
        segments = delete(SegmentRow).where(
            SegmentRow.id.in_(
                select(SegmentRow.id)
                .join(InstanceRow, InstanceRow.id == SegmentRow.instance_id)
                .where(purged)
                .limit(most)
            )
        )
        chunks = delete(StagedChunkRow).where(
            tuple_(StagedChunkRow.instance_id, StagedChunkRow.seq).in_(
                select(StagedChunkRow.instance_id, StagedChunkRow.seq)
                .join(InstanceRow, InstanceRow.id == StagedChunkRow.instance_id)
                .where(purged)
                .limit(most)
            )
        )

        def delete_rows(connection: Connection) -> Removed:
            removed = {
                "segments": connection.execute(segments).rowcount,
                "staged_file_chunks": connection.execute(chunks).rowcount,
            }
            return {table: rows for table, rows in removed.items() if rows}

        return await self._instances.in_one_call(delete_rows, durable=False)

    async def delete_instances(self, expiry: Expiry, archive: Archiving | None = None) -> Removed:
        """One batch of expired instances, deleted with every row of theirs, counted by
        table. Empty: none left (or none of those found may go now)."""
        goes = _Goes(expiry, whole=True)
        if self._postgres:
            return await self._deleted_whole(goes, archive)
        return await self._batch(goes, archive, _delete_with_rows)

    async def delete_skipped_ticks(self, flows: tuple[str, ...], before: datetime) -> Removed:
        """One batch of the schedule ticks of `flows` before `before` that started no run
        (the previous run was still going); a tick that started a run goes with its
        instance. Empty: none left."""
        skipped = select(ScheduleTickRow.flow, ScheduleTickRow.tick).where(
            *_skipped_before(flows, before)
        )
        statement = delete(ScheduleTickRow).where(
            tuple_(ScheduleTickRow.flow, ScheduleTickRow.tick).in_(skipped.limit(self.batch_size))
        )

        def delete_ticks(connection: Connection) -> Removed:
            deleted = connection.execute(statement).rowcount
            return {"schedule_ticks": deleted} if deleted else {}

        return await self._instances.in_one_call(delete_ticks, durable=False)

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
        postgres = self._postgres
        bound = _bound(ids)
        async with self._instances.engine.connect() as connection:
            instances = (
                await connection.execute(
                    select(InstanceRow).where(_among(InstanceRow.id, postgres)), bound
                )
            ).mappings()
            records = {
                row["id"]: {**_in_utc(row), "business_keys": [], "activities": []}
                for row in instances
            }
            keys = await connection.execute(
                select(BusinessKeyRow.instance_id, BusinessKeyRow.kind, BusinessKeyRow.value)
                .where(_among(BusinessKeyRow.instance_id, postgres))
                .order_by(BusinessKeyRow.id),
                bound,
            )
            for instance_id, kind, value in keys.all():
                records[instance_id]["business_keys"].append({"kind": kind, "value": value})
            activities = (
                await connection.execute(
                    select(ActivityRow)
                    .where(_among(ActivityRow.instance_id, postgres))
                    .order_by(ActivityRow.instance_id, ActivityRow.seq),
                    bound,
                )
            ).mappings()
            for activity in activities:
                record = {
                    k: v for k, v in _in_utc(activity).items() if k not in ("id", "instance_id")
                }
                records[activity["instance_id"]]["activities"].append(record)
        return list(records.values())

    async def count_payloads(self, expiry: Expiry, instances: Expiry) -> dict[str, int]:
        """Per flow, the payloads that would be purged now: of the instances that stay, those
        that go per `instances` going whole, with their payloads, first."""
        return await self._count([*_payload_expired(expiry), ~and_(*_instance_expired(instances))])

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

    async def _batch(self, goes: _Goes, archive: Archiving | None, remove: Removal) -> Removed:
        """One batch of what `goes` selects: archived first when asked, then removed, those
        that still qualify only. Empty: none left (or, for payloads, none of those found may
        go now: the next run sees them again)."""
        # Whole instances (SQLite's: PostgreSQL's go by `_deleted_whole`) are searched by
        # their end alone, in the order they came, and what must stay (named, its file at
        # work) is left out once they are locked, by a statement for all of them; the
        # archive gets only those that may go.
        whole = goes.whole
        if archive is not None or not whole:
            searched = goes.conditions(by_received=whole)
        else:
            searched = _ended(goes.expiry, by_received=True)
        while found := await self._found(goes, searched):
            if archive is not None:
                await archive(await self.archived(found))
            removed = await self._removed(goes, found, remove)
            if removed or not goes.whole:
                return removed
        return {}

    async def _deleted_whole(self, goes: _Goes, archive: Archiving | None) -> Removed:
        """PostgreSQL: one batch of whole instances, in one transaction of two statements.
        The first locks the batch (`SKIP LOCKED`): with no archive to read it first, as the
        search finds it, where a lock by their keys after a search read the key's index
        again for each; with one, by their keys once it is archived. It gives back one row,
        the locked rows' ids and places (`ctid`) as array texts, which the second statement
        is given as they came: it checks what must stay (a file at work, a kept instance or
        a schedule naming it), deletes the others by their place (no second descent of the
        key's index) with every row of theirs, and counts what went. The checks start after
        the lock, so that they see what committed before it; the statements' rows are never
        read one by one in Python. Empty: none left (or none of those found may go now)."""
        while True:
            bound: dict[str, str] = {}
            if archive is None:
                rows = self._whole_search(goes, _ended(goes.expiry))
            else:
                found = await self._found(goes, goes.conditions())
                if not found:
                    return {}
                await archive(await self.archived(found))
                rows = _whole_columns().where(_among(InstanceRow.id, True))
                bound = _bound(found)
            async with self._instances.writing() as connection:
                locked = (await connection.execute(_locked(rows, goes.expiry), bound)).one()
                if not locked.locked:
                    if archive is None:
                        return {}
                    continue
                if archive is None:
                    self._resume_after(goes, locked.last_received, locked.last_id)
                counted = (
                    await connection.execute(
                        _CHECKED_AND_DELETED, {"ids": locked.ids, "places": locked.places}
                    )
                ).one()
            removed = {
                table: count for table, count in zip(_DELETED, counted, strict=True) if count
            }
            if removed:
                return removed

    async def _removed(self, goes: _Goes, found: list[str], remove: Removal) -> Removed:
        if self._postgres:
            async with self._instances.writing() as connection:
                return await connection.run_sync(
                    lambda each: remove(each, _taken(each, goes, found, postgres=True))
                )
        removed: Removed = {}
        while found:
            started = time.perf_counter()
            # Kept before the slice runs, which sizes the next: deleting by the new size
            # skipped the instances between the two sizes.
            size = self._slice
            went = await self._in_a_slice(goes, found[:size], remove)
            del found[:size]
            # A slice writes a few hundred pages to the log: copied as they come, the log
            # never reaches the net where a commit copies it itself, the writes behind it
            # waiting 80 to 100 ms.
            self._instances.log_copied_soon()
            for table, rows in went.items():
                removed[table] = removed.get(table, 0) + rows
            await asyncio.sleep((time.perf_counter() - started) * REST_SHARE)
        return removed

    async def _in_a_slice(self, goes: _Goes, found: list[str], remove: Removal) -> Removed:
        """SQLite: those of `found` that still qualify removed in one write transaction; the
        next slice sized so as to hold the writer about SLICE_SECONDS."""
        took = 0.0

        def still_going_removed(connection: Connection) -> Removed:
            nonlocal took
            # Timed from the writer's turn on, not from the wait for it behind the triggers'
            # writes, which said nothing of the slice and made the next ever smaller.
            started = time.perf_counter()
            taken = _taken(connection, goes, found, postgres=False)
            removed = remove(connection, taken) if taken.ids else {}
            took = time.perf_counter() - started
            return removed

        # Not durable: a slice that a power loss undoes is removed again by the next run, and
        # the next trigger's synced commit makes it durable with its own. Its foreign keys
        # unchecked: a slice deletes an instance's rows with it, and none that a kept
        # instance or schedule names (`_checked`, in the same transaction).
        removed: Removed = await self._instances.in_one_call(
            still_going_removed,
            durable=False,
            keys_checked=False,
        )
        sized = round(len(found) * SLICE_SECONDS / took) if took > 0 else self.batch_size
        self._slice = max(1, min(self.batch_size, sized, 2 * self._slice))
        return removed

    async def _found(self, goes: _Goes, conditions: list[ColumnElement[bool]]) -> list[str]:
        """At most a batch of the instances the conditions select, read without a lock.

        Payloads by the index of those kept: on SQLite in no order; on PostgreSQL the
        oldest ended first, of each flow and status in turn, an order that a read of the
        whole table could give only by reading all of it. With the conditions over all
        flows and statuses at once, the planner read `instances` whole, 150 ms on 1,000,000
        to find none: its statistics, behind the purge's deletions, still counted the days
        it had deleted, and took a batch for found after a few pages. Whole instances the
        oldest received first, after the last batch's last: the index of received_at gives
        them in order and leaves behind what earlier batches removed or kept (a search from
        the start, or in no order by reading the table, read the space they left again each
        batch, more each time). None found: the next search starts anew."""
        if not goes.whole:
            query = (
                _payloads_in_order(goes.expiry, self.batch_size)
                if self._postgres
                else select(InstanceRow.id).where(*conditions).limit(self.batch_size)
            )
            async with self._instances.engine.connect() as connection:
                return list(await connection.scalars(query))
        # Their ids and order only: the slices read what they check in their transaction.
        keys = self._whole_search(goes, conditions).with_only_columns(
            InstanceRow.id, InstanceRow.received_at
        )
        async with self._instances.engine.connect() as connection:
            found = (await connection.execute(keys)).all()
        if found:
            self._resume_after(goes, found[-1].received_at, found[-1].id)
        return [row.id for row in found]

    def _resume_after(self, goes: _Goes, last_received: datetime, last_id: str) -> None:
        self._next_after[_kind(goes.expiry)] = _After(goes.expiry.before, last_received, last_id)

    def _whole_search(self, goes: _Goes, conditions: list[ColumnElement[bool]]) -> _Whole:
        """A batch of whole instances, the oldest received first, after the last batch's
        last (and forgetting it: a search that finds none starts anew), with what `ended`
        checks."""
        received = InstanceRow.received_at
        # An instance is received before it ends: this bounds the index's range.
        query = _whole_columns().where(*conditions, received < goes.expiry.before)
        after = self._next_after.pop(_kind(goes.expiry), None)
        if after is not None and after.before == goes.expiry.before:
            last_received, last_id = after.last_received, after.last_id
            query = query.where(
                received >= last_received,
                or_(received > last_received, InstanceRow.id > last_id),
            )
        return query.order_by(received, InstanceRow.id).limit(self.batch_size)


@dataclass(frozen=True)
class _After:
    """The last instance a search of whole instances found, under the cut-off `before`."""

    before: datetime
    last_received: datetime
    last_id: str


def _kind(expiry: Expiry) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return expiry.flows, expiry.statuses


_Whole = Select[str, datetime, str, str, datetime | None, datetime | None]


def _whole_columns() -> _Whole:
    """What a batch of whole instances is read with: its key, order and what `ended`
    checks."""
    return select(
        InstanceRow.id,
        InstanceRow.received_at,
        InstanceRow.flow,
        InstanceRow.status,
        InstanceRow.finished_at,
        InstanceRow.payload_purged_at,
    )


def _payloads_in_order(expiry: Expiry, most: int) -> Select[str]:
    """PostgreSQL: at most `most` instances whose payloads expired, for each of the
    expiry's flows and statuses the oldest ended first, from the index of kept payloads
    (flow, status, finished_at)."""
    expiring = values(column("flow", String), column("status", String), name="expiring").data(
        [(flow, status) for flow in expiry.flows for status in expiry.statuses]
    )
    kept = (
        select(InstanceRow.id)
        .where(
            InstanceRow.flow == expiring.c.flow,
            InstanceRow.status == expiring.c.status,
            InstanceRow.finished_at < expiry.before,
            InstanceRow.payload_purged_at.is_(None),
            *_work_finished(),
        )
        .order_by(InstanceRow.finished_at)
        .limit(most)
        .lateral("kept")
    )
    return select(kept.c.id).select_from(expiring).join(kept, true()).limit(most)


def _among(
    column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None], postgres: bool
) -> ColumnElement[bool]:
    """`column` is one of the ids bound as `ids` (`_bound`), one value whatever their
    number: a JSON array, read on PostgreSQL into an array (`= ANY`, an index's condition),
    on SQLite by json_each. (An array bound as such took psycopg 2.7 ms of the event loop's
    CPU to write for 1,000 ids, against 0.1 ms for the JSON, and a batch binds a dozen.)"""
    as_json: BindParameter[str] = bindparam("ids", type_=String)
    if postgres:
        listed = func.jsonb_array_elements_text(cast(as_json, JSONB))
        return column == any_(func.array(select(listed).scalar_subquery()))
    return column.in_(select(func.json_each(as_json).table_valued("value").c.value))


def _bound(ids: Sequence[str]) -> dict[str, str]:
    """`ids` as `_among` reads them."""
    return {"ids": json.dumps(list(ids))}


@dataclass(frozen=True)
class _Statements:
    """What a batch (PostgreSQL's payloads) or a slice (SQLite) runs, given its ids as
    `_bound` binds them, built once per database: built for each slice, a dozen
    statements took SQLAlchemy 2 to 3 ms of CPU, more than SQLite took to run them for a
    few hundred instances (bench/README.md, store_scale.py)."""

    ended: Select[str, str, str, datetime | None, datetime | None]
    jobs: Select[str, str]
    staged: Select[str, str]
    named: CompoundSelect[str | None]
    empty_payloads: Update
    empty_set_aside: Update
    unkeep_chunks: Update

    @classmethod
    def built(cls, postgres: bool) -> _Statements:
        other = aliased(InstanceRow)
        return cls(
            ended=select(
                InstanceRow.id,
                InstanceRow.flow,
                InstanceRow.status,
                InstanceRow.finished_at,
                InstanceRow.payload_purged_at,
            )
            .where(_among(InstanceRow.id, postgres))
            .with_for_update(of=InstanceRow, skip_locked=True),
            jobs=select(FileJobRow.instance_id, FileJobRow.state)
            .where(_among(FileJobRow.instance_id, postgres))
            .with_for_update(),
            staged=select(StagedFileRow.instance_id, StagedFileRow.state)
            .where(_among(StagedFileRow.instance_id, postgres))
            .with_for_update(),
            named=union_all(
                select(other.resubmit_of).where(_among(other.resubmit_of, postgres)),
                select(other.parent_id).where(_among(other.parent_id, postgres)),
                select(ScheduleRow.last_instance),
                select(ScheduleRow.running_instance),
            ),
            empty_payloads=update(InstanceRow)
            .where(_among(InstanceRow.id, postgres))
            .values(
                payload=None,
                reply=None,
                payload_purged_at=bindparam("now", type_=InstanceRow.payload_purged_at.type),
            ),
            empty_set_aside=update(FileJobRow)
            .where(_among(FileJobRow.instance_id, postgres))
            .values(set_aside=None, set_aside_zlib=None),
            unkeep_chunks=update(StagedFileRow)
            .where(_among(StagedFileRow.instance_id, postgres))
            .values(chunks_kept=False),
        )


def _taken(connection: Connection, goes: _Goes, found: list[str], *, postgres: bool) -> Taken:
    """Those of `found` that `goes` still selects, in the removing transaction; on
    PostgreSQL locked, with their file jobs and staged files. Read by their keys alone, then
    checked by statements of their own: with its conditions beside the keys, the plan read
    every expired instance's index entry (PostgreSQL's BitmapAnd, SQLite's search of the
    index of flow, status and end), and the check of what names them the whole index of
    resubmit_of (a merge anti join), each batch."""
    rows = connection.execute(_STATEMENTS[postgres].ended, _bound(found)).all()
    ended = [
        instance_id
        for instance_id, flow, status, finished_at, purged_at in rows
        if goes.ended(flow, status, finished_at, purged_at)
    ]
    return _checked(connection, goes, ended, postgres=postgres)


def _checked(connection: Connection, goes: _Goes, ids: list[str], *, postgres: bool) -> Taken:
    """Those of the locked instances `ids`, which `goes` selects, that may go now: their
    file work finished and, whole, nothing kept naming them."""
    if not ids:
        return Taken([], [], [])
    statements = _STATEMENTS[postgres]
    bound = _bound(ids)
    # What committed between the search and the lock is seen by these statements, which
    # start after it: a file resumed (or a transfer), a resubmit naming an instance. What
    # comes after the lock waits for it (and finds the instance gone: InstanceGone).
    jobs = connection.execute(statements.jobs, bound).all()
    busy = {instance_id for instance_id, state in jobs if state != "done"}
    staged = connection.execute(statements.staged, bound).all()
    busy |= {instance_id for instance_id, state in staged if state in ("queued", "running")}
    if goes.whole:
        busy |= set(connection.scalars(statements.named, bound))
    return Taken(
        [each for each in ids if each not in busy],
        [instance_id for instance_id, _ in jobs if instance_id not in busy],
        [instance_id for instance_id, _ in staged if instance_id not in busy],
    )


def _skipped_before(flows: tuple[str, ...], before: datetime) -> list[ColumnElement[bool]]:
    return [
        ScheduleTickRow.instance_id.is_(None),
        ScheduleTickRow.flow.in_(flows),
        ScheduleTickRow.tick < before,
    ]


async def _count_of(connection: AsyncConnection, rows: Select[Any]) -> int:
    found = await connection.scalar(select(func.count()).select_from(rows.subquery()))
    return found or 0


def _rows_of(taken: Taken) -> list[tuple[_Named, list[str]]]:
    """The tables that name an instance by `instance_id`, each with those of `taken` it may
    hold rows of (so that a table is read for few, by its index, rather than scanned for
    all): deleted before the instances."""
    return [
        (BusinessKeyRow, taken.ids),
        (ActivityRow, taken.ids),
        (ErrorNoticeRow, taken.ids),
        (SegmentRow, taken.with_file_job),
        (FileJobRow, taken.with_file_job),
        (StagedChunkRow, taken.with_staged_file),
        (StagedFileRow, taken.with_staged_file),
        (ScheduleTickRow, taken.ids),
    ]


_Named = type[
    BusinessKeyRow
    | ActivityRow
    | ErrorNoticeRow
    | SegmentRow
    | FileJobRow
    | StagedChunkRow
    | StagedFileRow
    | ScheduleTickRow
]


def _delete_with_rows(connection: Connection, taken: Taken) -> Removed:
    """SQLite: the instances deleted with every row of theirs, a statement a table, counted
    by table."""
    removed: Removed = {}
    for rows, ids in [*_rows_of(taken), (InstanceRow, taken.ids)]:
        if not ids:
            continue
        deleted = connection.execute(_DELETES[rows.__tablename__], _bound(ids)).rowcount
        if deleted:
            removed[rows.__tablename__] = deleted
    return removed


#: SQLite: each table's rows of the instances bound as `ids` deleted, by table; built once
#: (see `_Statements`).
_DELETES = {
    rows.__tablename__: delete(rows).where(_among(rows.instance_id, False))
    for rows, _ in _rows_of(Taken([], [], []))
} | {InstanceRow.__tablename__: delete(InstanceRow).where(_among(InstanceRow.id, False))}


#: A row's place in its table: a TID scan reads it straight from its page.
_PLACE: Label[str] = literal_column("instances.ctid", String).label("place")


def _locked(rows: _Whole, expiry: Expiry) -> Select[int, str, str, datetime, str]:
    """PostgreSQL: the instances of `rows` locked (`SKIP LOCKED`), those that `expiry`
    still selects given back in one row: how many, their ids and places as PostgreSQL's
    array texts, and the last in the order received (the next search starts after it)."""
    locked = (
        rows.add_columns(_PLACE).with_for_update(of=InstanceRow, skip_locked=True).cte("locked")
    )
    last_id = func.array_agg(
        aggregate_order_by(locked.c.id, locked.c.received_at.desc(), locked.c.id.desc()),
        type_=ARRAY(String),
    )[1]
    return select(
        func.count().label("locked"),
        cast(func.array_agg(locked.c.id), String).label("ids"),
        cast(func.array_agg(locked.c.place), String).label("places"),
        func.max(locked.c.received_at).label("last_received"),
        last_id.label("last_id"),
    ).where(
        locked.c.flow.in_(expiry.flows),
        locked.c.status.in_(expiry.statuses),
        locked.c.finished_at < expiry.before,
    )


#: The tables the statement below deletes from, in the order of its counts.
_DELETED = (
    "instances",
    "business_keys",
    "activities",
    "error_notices",
    "schedule_ticks",
    "segments",
    "file_jobs",
    "staged_file_chunks",
    "staged_files",
)


def _checked_and_deleted() -> Select[Any]:
    """PostgreSQL: of the locked instances `ids` (at `places`), those whose file work is
    finished and that no kept instance or schedule names deleted, each with every row of
    theirs, in one statement (data-modifying `WITH` queries: the statement-level trigger
    on `instances` fires once); the rows that went counted per table, as `_DELETED`."""
    ids = cast(bindparam("ids", type_=String), ARRAY(String))
    jobs = (
        select(FileJobRow.instance_id, FileJobRow.state)
        .where(FileJobRow.instance_id == any_(ids))
        .with_for_update()
        .cte("jobs")
    )
    staged = (
        select(StagedFileRow.instance_id, StagedFileRow.state)
        .where(StagedFileRow.instance_id == any_(ids))
        .with_for_update()
        .cte("staged")
    )
    other = aliased(InstanceRow)
    kept = union_all(
        select(jobs.c.instance_id).where(jobs.c.state != "done"),
        select(staged.c.instance_id).where(staged.c.state.in_(("queued", "running"))),
        select(other.resubmit_of).where(other.resubmit_of == any_(ids)),
        select(other.parent_id).where(other.parent_id == any_(ids)),
        select(ScheduleRow.last_instance).where(ScheduleRow.last_instance.is_not(None)),
        select(ScheduleRow.running_instance).where(ScheduleRow.running_instance.is_not(None)),
    ).cte("kept")
    places = text("instances.ctid = ANY(CAST(:places AS TID[]))")
    gone = (
        delete(InstanceRow)
        .where(places, InstanceRow.id.not_in(select(kept.c[0])))
        .returning(InstanceRow.id)
        .cte("gone_instances")
    )
    gone_ids = select(gone.c.id)

    with_job = func.array(
        select(jobs.c.instance_id).where(jobs.c.instance_id.in_(gone_ids)).scalar_subquery()
    )
    with_staged = func.array(
        select(staged.c.instance_id).where(staged.c.instance_id.in_(gone_ids)).scalar_subquery()
    )
    every = func.array(gone_ids.scalar_subquery())
    one: ColumnElement[int] = literal_column("1")
    went = [gone]
    for table, rows, among in (
        ("business_keys", BusinessKeyRow, every),
        ("activities", ActivityRow, every),
        ("error_notices", ErrorNoticeRow, every),
        ("schedule_ticks", ScheduleTickRow, every),
        ("segments", SegmentRow, with_job),
        ("file_jobs", FileJobRow, with_job),
        ("staged_file_chunks", StagedChunkRow, with_staged),
        ("staged_files", StagedFileRow, with_staged),
    ):
        went.append(
            delete(rows).where(rows.instance_id == any_(among)).returning(one).cte(f"gone_{table}")
        )
    return select(*(select(func.count()).select_from(each).scalar_subquery() for each in went))


_CHECKED_AND_DELETED = _checked_and_deleted()

#: By whether the database is PostgreSQL.
_STATEMENTS = {postgres: _Statements.built(postgres) for postgres in (False, True)}
