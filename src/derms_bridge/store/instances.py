"""Queries on instances, their business keys, activities and error notices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from derms_bridge.schemas.ops import (
    COUNT_LIMIT,
    Activity,
    BusinessKey,
    InstanceFilter,
    KeptActivity,
    PageCursor,
)
from derms_bridge.store.database import kept_connection, sqlite_side_connection, wal_checkpointer
from derms_bridge.store.group_commit import GroupCommit
from derms_bridge.store.instance_records import (
    InstanceHistory,
    InstanceRecord,
    InstanceRecords,
    StoredMessage,
)
from derms_bridge.store.instance_writes import (
    InstanceWrite,
    created,
    finished,
    key_rows,
    run_together,
    statements,
)
from derms_bridge.store.tables import (
    ActivityRow,
    BusinessKeyRow,
    ErrorNoticeRow,
    InstanceRow,
    RejectionEmailRow,
)
from derms_bridge.tracing import TraceRef, kept_ref

_T = TypeVar("_T")


class InstanceGone(Exception):
    """The instance to resubmit was purged meanwhile: no run may name it."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id} was purged meanwhile")
        self.instance_id = instance_id


class AlreadyResubmitted(Exception):
    """Another run resubmitted the instance first: each is resubmitted once, by its latest
    run after that."""

    def __init__(self, instance_id: str, later_id: str) -> None:
        super().__init__(f"instance {instance_id} was resubmitted already, as {later_id}")
        self.later_id = later_id


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite compares the wall-clock text and drops any offset; every stored time is UTC.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class InstanceStore:
    """Writes go through Core statements on one connection each: every flow writes twice,
    and the ORM's unit of work cost several times the SQL's own time per flow."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite lets one writer in at a time; writers queued here never meet its lock,
        # whose busy-wait made a loaded hub's writes take up to a second.
        self._sqlite_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._side = sqlite_side_connection(engine)
        self._checkpointer = wal_checkpointer(engine, self._side)
        self._kept = kept_connection(engine)
        self._group: GroupCommit[InstanceWrite] = GroupCommit(self._commit_together)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; on SQLite, one at a time in this process."""
        if self._sqlite_writer is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._sqlite_writer, self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def writer_turn(self) -> AsyncIterator[None]:
        """On SQLite, this process's turn to write by a connection of its own, one at a time
        with `writing`'s; elsewhere nothing to wait for."""
        if self._sqlite_writer is None:
            yield
            return
        async with self._sqlite_writer:
            yield

    async def in_one_call(
        self, work: Callable[[Connection], _T], *, durable: bool = True, keys_checked: bool = True
    ) -> _T:
        """`work` in a write transaction of its own, in one call off the event loop. On
        SQLite by the side connection's thread: through aiosqlite each statement would take
        the event loop three or four trips to its thread and back, and those trips cost more
        CPU than the statements. `durable` and `keys_checked` as `SqliteSideConnection.run`
        takes them, on SQLite (PostgreSQL's commits are durable, and no foreign key names
        an instance there)."""
        if self._side is None:
            async with self.writing() as connection:
                return await connection.run_sync(work)
        async with self.writer_turn():
            return await self._side.run(work, durable=durable, keys_checked=keys_checked)

    def log_copied_soon(self) -> None:
        """On SQLite, the write-ahead log copied into the file now, beside the writes, for a
        writer that fills it fast (the purge; `WalCheckpointer.soon`). Elsewhere nothing."""
        if self._checkpointer is not None:
            self._checkpointer.soon()

    async def _commit_together(self, writes: Sequence[InstanceWrite]) -> list[None]:
        """The group commit's transactions, one at a time: on PostgreSQL by psycopg, on the
        connection kept for them."""
        if self._kept is None:
            return await self.in_one_call(partial(run_together, writes))
        await self._kept.run(statements(writes, self.engine.dialect))
        return [None] * len(writes)

    async def aclose(self) -> None:
        if self._kept is not None:
            await self._kept.close()
        # The checkpointer first: its rounds end on the side connection's thread.
        if self._checkpointer is not None:
            await self._checkpointer.close()
        if self._side is not None:
            await self._side.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def create(
        self,
        *,
        instance_id: str,
        flow: str,
        caller: str | None,
        payload: Any,
        keys: Sequence[tuple[str, str]],
        resubmit_of: str | None = None,
        parent_id: str | None = None,
        runner: str | None = None,
        alongside: Callable[[AsyncConnection], Awaitable[None]] | None = None,
        trace: TraceRef | None = None,
    ) -> None:
        """Written, and committed, before the flow calls anyone; `alongside` writes what
        must exist with it (a received file), in the same transaction. `runner` is the hub
        process that runs it to its end, if one does. AlreadyResubmitted when another run
        resubmitted `resubmit_of` first, InstanceGone when the purge took it."""
        now = utcnow()
        row = {
            "id": instance_id,
            "flow": flow,
            "status": "in_progress",
            "caller": caller,
            "payload": payload,
            "resubmit_of": resubmit_of,
            "parent_id": parent_id,
            "runner": runner,
            "received_at": now,
            "updated_at": now,
            **_trace_columns(trace),
        }
        if resubmit_of is None and alongside is None:
            await self._group.write(created(row, keys))
            return
        async with self.writing() as connection:
            attempts = 1
            if resubmit_of is not None:
                # The row lock makes two resubmits of one instance (two operators, two
                # processes) take turns here, so that the second finds the first's run.
                previous = await connection.scalar(
                    select(InstanceRow.attempts)
                    .where(InstanceRow.id == resubmit_of)
                    .with_for_update()
                )
                if previous is None:
                    # The purge locked it first, and deleted it: no foreign key refuses
                    # a run naming it on PostgreSQL (migration 0020), this does.
                    raise InstanceGone(resubmit_of)
                later = await connection.scalar(
                    select(InstanceRow.id).where(InstanceRow.resubmit_of == resubmit_of).limit(1)
                )
                if later is not None:
                    raise AlreadyResubmitted(resubmit_of, later)
                attempts = previous + 1
            await connection.execute(insert(InstanceRow).values(**row, attempts=attempts))
            await _insert_keys(connection, instance_id, keys)
            if alongside is not None:
                await alongside(connection)

    async def finish(
        self,
        instance_id: str,
        *,
        status: str,
        reply: Any,
        error: str | None,
        activities: Sequence[Activity],
        keys: Sequence[tuple[str, str]],
        skipped_reason: str | None = None,
        after_kept: bool = False,
    ) -> None:
        """The run's outcome; `after_kept` numbers its activities after those of the
        instance's earlier runs (a received file's transfer, run again)."""
        now = utcnow()
        outcome = {
            "status": status,
            "reply": reply,
            "error": error,
            "skipped_reason": skipped_reason,
            "updated_at": now,
            "finished_at": now,
        }
        if not after_kept:
            await self._group.write(finished(instance_id, outcome, activities, keys))
            return
        async with self.writing() as connection:
            await connection.execute(
                update(InstanceRow).where(InstanceRow.id == instance_id).values(**outcome)
            )
            if activities:
                # A run writes its activities once, when it finishes: a run again numbers
                # its own after those of the runs before it.
                first = 1 + (
                    await connection.scalar(
                        select(func.coalesce(func.max(ActivityRow.seq), 0)).where(
                            ActivityRow.instance_id == instance_id
                        )
                    )
                    or 0
                )
                await connection.execute(
                    insert(ActivityRow),
                    [
                        {"instance_id": instance_id, "seq": n, **vars(activity)}
                        for n, activity in enumerate(activities, start=first)
                    ],
                )
            await _insert_keys(connection, instance_id, keys)

    async def create_rejected(
        self,
        *,
        instance_id: str,
        flow: str,
        caller: str,
        payload: Any,
        reply: Any,
        error: str,
        keys: Sequence[tuple[str, str]],
        trace: TraceRef | None = None,
    ) -> None:
        """A message refused before any flow ran: kept as it came, ended at once."""
        now = utcnow()
        async with self.writing() as connection:
            await connection.execute(
                insert(InstanceRow).values(
                    id=instance_id,
                    flow=flow,
                    status="rejected",
                    caller=caller,
                    payload=payload,
                    reply=reply,
                    error=error,
                    attempts=1,
                    received_at=now,
                    updated_at=now,
                    finished_at=now,
                    **_trace_columns(trace),
                )
            )
            await _insert_keys(connection, instance_id, keys)

    async def claim_rejection_email(self, caller: str, quiet_for: timedelta) -> bool:
        """True when no email about `caller`'s rejected messages went out within
        `quiet_for`, the claim then taken; one statement, so that processes sharing the
        database agree on who sends it."""
        now = utcnow()
        dialect_insert = (
            postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            dialect_insert(RejectionEmailRow)
            .values(caller=caller, sent_at=now)
            .on_conflict_do_update(
                index_elements=[RejectionEmailRow.caller],
                set_={"sent_at": now},
                where=RejectionEmailRow.sent_at <= now - quiet_for,
            )
            .returning(RejectionEmailRow.caller)
        )
        async with self.writing() as connection:
            claimed = await connection.execute(statement)
            return claimed.first() is not None

    async def resolve_resubmitted(self, instance_id: str) -> list[str]:
        """The resubmit of `instance_id` succeeded: it and the failed runs it was itself
        resubmitted from are resolved, their errors kept. The flows of those resolved."""
        now = utcnow()
        resolved: list[str] = []
        async with self.writing() as connection:
            current: str | None = instance_id
            while current is not None:
                row = (
                    await connection.execute(
                        select(InstanceRow.flow, InstanceRow.status, InstanceRow.resubmit_of).where(
                            InstanceRow.id == current
                        )
                    )
                ).first()
                if row is None or row.status != "failed":
                    break
                await connection.execute(
                    update(InstanceRow)
                    .where(InstanceRow.id == current)
                    .values(status="resolved", updated_at=now)
                )
                resolved.append(row.flow)
                current = row.resubmit_of
        return resolved

    async def claim_error_notice(self, instance_id: str, fingerprint: str) -> bool:
        """True the first time this error is seen in this instance, false ever after."""
        values = {"instance_id": instance_id, "fingerprint": fingerprint, "at": utcnow()}
        dialect_insert = (
            postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        )
        async with self.writing() as connection:
            inserted = await connection.execute(
                dialect_insert(ErrorNoticeRow)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(ErrorNoticeRow.fingerprint)
            )
            return inserted.first() is not None

    async def get(self, instance_id: str) -> InstanceHistory | None:
        async with self._sessions() as session:
            row = await session.get(InstanceRow, instance_id)
            if row is None:
                return None
            keys = await _keys_of(session, [instance_id])
            activities = (
                await session.scalars(
                    select(ActivityRow)
                    .where(ActivityRow.instance_id == instance_id)
                    .order_by(ActivityRow.seq)
                )
            ).all()
            later = (
                await session.scalars(
                    select(InstanceRow.id)
                    .where(InstanceRow.resubmit_of == instance_id)
                    .order_by(InstanceRow.received_at)
                )
            ).all()
            children = (
                await session.scalars(
                    select(InstanceRow.id)
                    .where(InstanceRow.parent_id == instance_id)
                    .order_by(InstanceRow.received_at)
                )
            ).all()
            return InstanceHistory(
                **vars(_record(row, keys.get(instance_id, []))),
                payload=row.payload,
                reply=row.reply,
                resubmitted_as=list(later),
                children=list(children),
                activities=[
                    KeptActivity(
                        seq=a.seq,
                        target=a.target,
                        operation=a.operation,
                        method=a.method,
                        path=a.path,
                        http_status=a.http_status,
                        duration_ms=a.duration_ms,
                        error=a.error,
                        at=as_utc(a.at),
                    )
                    for a in activities
                ],
            )

    async def payload_of(self, instance_id: str) -> StoredMessage | None:
        later = (
            select(InstanceRow.id)
            .where(InstanceRow.resubmit_of == instance_id)
            .order_by(InstanceRow.received_at)
            .limit(1)
            .scalar_subquery()
        )
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        InstanceRow.flow,
                        InstanceRow.payload,
                        InstanceRow.parent_id,
                        InstanceRow.status,
                        later,
                        InstanceRow.payload_purged_at,
                        InstanceRow.trace_id,
                        InstanceRow.trace_span_id,
                    ).where(InstanceRow.id == instance_id)
                )
            ).first()
            if row is None:
                return None
            flow, payload, parent_id, status, resubmitted_as, purged_at, trace_id, span_id = row
            return StoredMessage(
                flow,
                payload,
                parent_id,
                status,
                resubmitted_as,
                as_utc(purged_at) if purged_at is not None else None,
                kept_ref(trace_id, span_id),
            )

    async def trace_of(self, instance_id: str) -> TraceRef | None:
        """Where the instance's trace hangs, for work on it that a worker takes up later."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(InstanceRow.trace_id, InstanceRow.trace_span_id).where(
                        InstanceRow.id == instance_id
                    )
                )
            ).first()
        return kept_ref(*row) if row is not None else None

    async def resolve_parent(self, parent_id: str, child_id: str) -> None:
        """A failed parent whose failed child succeeded on resubmit has done all it had to:
        it is marked succeeded, its error kept, saying which run resolved it."""
        now = utcnow()
        async with self.writing() as connection:
            error = await connection.scalar(
                select(InstanceRow.error).where(
                    InstanceRow.id == parent_id, InstanceRow.status == "failed"
                )
            )
            if error is None:
                return
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == parent_id)
                .values(
                    status="succeeded",
                    error=f"resolved by resubmitted child {child_id}; it had failed: {error}",
                    updated_at=now,
                )
            )

    async def search(self, where: InstanceFilter) -> InstanceRecords:
        """A page of what the filter selects, newest first, counted up to COUNT_LIMIT; one
        more row is read than the page holds, to tell whether another page follows."""
        query = matching(where)
        page = query if where.after is None else query.where(*_after(where.after))
        async with self._sessions() as session:
            counted = await session.scalar(
                select(func.count()).select_from(
                    query.with_only_columns(InstanceRow.id).limit(COUNT_LIMIT + 1).subquery()
                )
            )
            rows = (
                await session.scalars(
                    page.order_by(InstanceRow.received_at.desc(), InstanceRow.id)
                    .limit(where.limit + 1)
                    .offset(where.offset)
                )
            ).all()
            more = len(rows) > where.limit
            rows = rows[: where.limit]
            keys = await _keys_of(session, [r.id for r in rows])
        return InstanceRecords(
            items=[_record(r, keys.get(r.id, [])) for r in rows],
            total=min(counted or 0, COUNT_LIMIT),
            total_exact=(counted or 0) <= COUNT_LIMIT,
            next_after=PageCursor(as_utc(rows[-1].received_at), rows[-1].id) if more else None,
        )


def _after(cursor: PageCursor) -> list[ColumnElement[bool]]:
    """Past the cursor, newest first (ties in time by id): the first condition alone is a
    range of the indexes that start with received_at."""
    at = _utc(cursor.received_at)
    return [
        InstanceRow.received_at <= at,
        or_(InstanceRow.received_at < at, InstanceRow.id > cursor.instance_id),
    ]


def matching(where: InstanceFilter) -> Select[InstanceRow]:
    """The instances a filter selects, unordered and unpaged."""
    query = select(InstanceRow)
    if where.flows:
        query = query.where(InstanceRow.flow.in_(where.flows))
    if where.status:
        query = query.where(InstanceRow.status == where.status)
    if where.received_from:
        query = query.where(InstanceRow.received_at >= _utc(where.received_from))
    if where.received_to:
        query = query.where(InstanceRow.received_at < _utc(where.received_to))
    if where.business_key:
        keyed = select(BusinessKeyRow.instance_id).where(BusinessKeyRow.value == where.business_key)
        query = query.where(InstanceRow.id.in_(keyed))
    return query


def payload_kept(instance_id: str) -> ColumnElement[bool]:
    """The instance's payload and file rows were not purged: it may run again."""
    return ~exists().where(
        InstanceRow.id == instance_id, InstanceRow.payload_purged_at.is_not(None)
    )


async def reopen(connection: AsyncConnection, instance_id: str, now: datetime) -> None:
    """The instance runs again on itself (a kept file resumed): in progress, one more try."""
    await connection.execute(
        update(InstanceRow)
        .where(InstanceRow.id == instance_id)
        .values(
            status="in_progress",
            error=None,
            attempts=InstanceRow.attempts + 1,
            updated_at=now,
            finished_at=None,
        )
    )


async def _insert_keys(
    connection: AsyncConnection, instance_id: str, keys: Sequence[tuple[str, str]]
) -> None:
    if rows := key_rows(instance_id, keys):
        await connection.execute(insert(BusinessKeyRow), rows)


async def _keys_of(session: AsyncSession, ids: list[str]) -> dict[str, list[BusinessKey]]:
    found: dict[str, list[BusinessKey]] = {}
    if not ids:
        return found
    rows = await session.scalars(
        select(BusinessKeyRow)
        .where(BusinessKeyRow.instance_id.in_(ids))
        .order_by(BusinessKeyRow.id)
    )
    for row in rows:
        found.setdefault(row.instance_id, []).append(BusinessKey(kind=row.kind, value=row.value))
    return found


def _record(row: InstanceRow, keys: list[BusinessKey]) -> InstanceRecord:
    return InstanceRecord(
        id=row.id,
        flow=row.flow,
        status=row.status,
        caller=row.caller,
        error=row.error,
        skipped_reason=row.skipped_reason,
        attempts=row.attempts,
        resubmit_of=row.resubmit_of,
        parent_id=row.parent_id,
        received_at=as_utc(row.received_at),
        updated_at=as_utc(row.updated_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        business_keys=keys,
        payload_purged_at=as_utc(row.payload_purged_at) if row.payload_purged_at else None,
        trace_id=row.trace_id,
    )


def _trace_columns(trace: TraceRef | None) -> dict[str, str | None]:
    return {
        "trace_id": trace.trace_id if trace else None,
        "trace_span_id": trace.span_id if trace else None,
    }
