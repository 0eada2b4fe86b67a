"""The dashboard's counts: instances per clock hour of receipt (UTC), flow and status, as
the triggers of migration 0019 keep them whatever path inserts, changes or deletes an
instance. Reading a window is reading its few thousand counts, not its instances.

Instances in progress are not kept in the counts (a flow's run is in progress only between
its two writes, and counting it there would cost every flow three more trigger
statements): the few there are at any moment are read from the index of (status,
received_at). On PostgreSQL the triggers append changes, which `fold_changes` moves into
the counts at every hub process's heartbeat; a read adds the changes not folded yet, so it
is right between folds too. On SQLite the triggers keep the counts themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    String,
    delete,
    func,
    literal,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import Insert, insert

from derms_bridge.schemas.ops import HourCount
from derms_bridge.store.instances import InstanceStore, _utc
from derms_bridge.store.tables import InstanceHourCountRow, InstanceRow, instance_count_changes

HOUR = timedelta(hours=1)
#: The key of the PostgreSQL advisory lock a fold holds: one hub process folds at a time,
#: the others' heartbeats find it taken and go on, so that no two folds wait on each
#: other's counts (the triggers never touch them: only a fold does).
FOLD_LOCK = 0x64_65_72_6D_73_30_31_39

_changes = instance_count_changes


def _fold_statement() -> Insert:
    moved = delete(_changes).returning(*_changes.c).cte("moved")
    summed = (
        select(moved.c.hour, moved.c.flow, moved.c.status, func.sum(moved.c.change))
        .group_by(moved.c.hour, moved.c.flow, moved.c.status)
        .having(func.sum(moved.c.change) != 0)
    )
    upsert = insert(InstanceHourCountRow).from_select(["hour", "flow", "status", "count"], summed)
    return upsert.on_conflict_do_update(
        index_elements=["hour", "flow", "status"],
        set_={"count": InstanceHourCountRow.count + upsert.excluded["count"]},
    ).add_cte(moved)


_FOLD = _fold_statement()
_TAKE_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)").bindparams(key=FOLD_LOCK)


async def fold_changes(store: InstanceStore) -> bool:
    """PostgreSQL: the changes the triggers appended, summed into the counts and taken away
    in one transaction, and the counts brought to 0 deleted; False (nothing done) when
    another process is folding. SQLite keeps its counts without: True at once."""
    if store.engine.dialect.name != "postgresql":
        return True
    async with store.writing() as connection:
        if not await connection.scalar(_TAKE_LOCK):
            return False
        await connection.execute(_FOLD)
        await connection.execute(
            delete(InstanceHourCountRow).where(InstanceHourCountRow.count == 0)
        )
    return True


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_of_receipt(store: InstanceStore) -> ColumnElement[datetime]:
    """The clock hour in UTC, as the counts keep it (migration 0019)."""
    if store.engine.dialect.name == "sqlite":
        return type_coerce(
            func.substr(InstanceRow.received_at, 1, 13, type_=String) + ":00:00.000000",
            DateTime(timezone=True),
        )
    utc = func.timezone("UTC", InstanceRow.received_at)
    return type_coerce(func.timezone("UTC", func.date_trunc("hour", utc)), DateTime(timezone=True))


async def counts_by_hour(store: InstanceStore, since: datetime) -> list[HourCount]:
    """The instances received since `since` per flow, clock hour and status, oldest first;
    an hour with none of a flow's instances at a status is absent. Exactly the instances
    received at or after `since`: the hours from the next clock hour on are read from the
    counts and the instances in progress, the part of an hour before it from the instances
    of that part (an index range of less than an hour)."""
    since = _utc(since)
    first_hour = _hour_of(since)
    whole_from = first_hour if since == first_hour else first_hour + HOUR
    # Bounded above too, a day past now, for clocks that run ahead (as the instances'
    # listing is); the counts' key starts with the hour, read as one range.
    until = _utc(datetime.now(UTC) + timedelta(days=1))
    hour = _hour_of_receipt(store)
    parts = [
        select(
            InstanceHourCountRow.hour,
            InstanceHourCountRow.flow,
            InstanceHourCountRow.status,
            InstanceHourCountRow.count,
        ).where(InstanceHourCountRow.hour >= whole_from, InstanceHourCountRow.hour < until),
        select(
            literal(first_hour, DateTime(timezone=True)).label("hour"),
            InstanceRow.flow,
            InstanceRow.status,
            func.count(),
        )
        .where(InstanceRow.received_at >= since, InstanceRow.received_at < whole_from)
        .group_by(InstanceRow.flow, InstanceRow.status),
        select(hour, InstanceRow.flow, InstanceRow.status, func.count())
        .where(
            InstanceRow.status == "in_progress",
            InstanceRow.received_at >= whole_from,
            InstanceRow.received_at < until,
        )
        .group_by(hour, InstanceRow.flow, InstanceRow.status),
    ]
    if store.engine.dialect.name == "postgresql":
        parts.append(
            select(_changes.c.hour, _changes.c.flow, _changes.c.status, _changes.c.change).where(
                _changes.c.hour >= whole_from, _changes.c.hour < until
            )
        )
    every = union_all(*parts).subquery()
    total = func.sum(every.c["count"]).cast(BigInteger)
    query = (
        select(every.c.hour, every.c.flow, every.c.status, total)
        .group_by(every.c.hour, every.c.flow, every.c.status)
        .having(total != 0)
        .order_by(every.c.hour, every.c.flow, every.c.status)
    )
    async with store.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    # A week's thousands of counts fall in 169 hours: each converted once.
    in_utc: dict[datetime, datetime] = {}
    counts = []
    for hour, flow, status, count in rows:
        if hour not in in_utc:
            in_utc[hour] = _utc(hour)
        counts.append(HourCount(flow=flow, status=status, hour=in_utc[hour], count=count))
    return counts
