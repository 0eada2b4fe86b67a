"""Queries on schedules: the tick claims that make one run per tick, and the running lease.

Both hold across hub processes sharing one database: a tick is a row that only one
insert creates, and a run holds its schedule's row under a lease that only one update
can take while it is free or lapsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from derms_bridge.store.instances import InstanceStore, as_utc
from derms_bridge.store.tables import InstanceRow, ScheduleRow, ScheduleTickRow


@dataclass(frozen=True)
class LastRun:
    instance_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    skipped_reason: str | None


@dataclass(frozen=True)
class ScheduleState:
    flow: str
    ticks_through: datetime
    running_instance: str | None
    last_run: LastRun | None


@dataclass(frozen=True)
class TickClaim:
    """What became of a tick this process tried to claim."""

    #: False: another process claimed it first (or it was handled already).
    claimed: bool
    #: The run this process now starts for it, when it may.
    instance_id: str | None = None
    #: The previous run still going, when the tick is skipped for it.
    running_instance: str | None = None


class ScheduleStore:
    def __init__(self, instances: InstanceStore) -> None:
        self._instances = instances
        self._insert: Any = (
            postgresql.insert if instances.engine.dialect.name == "postgresql" else sqlite.insert
        )

    async def ensure(self, flow: str, now: datetime) -> None:
        """The schedule's row, made the first time with every tick before `now` handled, so
        that a new schedule waits for its next tick instead of running at once."""
        async with self._instances.writing() as connection:
            await connection.execute(
                self._insert(ScheduleRow)
                .values(flow=flow, ticks_through=now)
                .on_conflict_do_nothing()
            )

    async def claim_tick(
        self, flow: str, tick: datetime, *, instance_id: str, owner: str, lease_until: datetime
    ) -> TickClaim:
        """Claim the tick (one process in all does) and, unless the previous run is still
        going, take the running lease for `instance_id`; one transaction."""
        async with self._instances.writing() as connection:
            inserted = await connection.execute(
                self._insert(ScheduleTickRow)
                .values(flow=flow, tick=tick, owner=owner, claimed_at=datetime.now(UTC))
                .on_conflict_do_nothing()
                .returning(ScheduleTickRow.tick)
            )
            if inserted.first() is None:
                return TickClaim(claimed=False)
            await connection.execute(
                update(ScheduleRow)
                .where(ScheduleRow.flow == flow, ScheduleRow.ticks_through < tick)
                .values(ticks_through=tick)
            )
            running = await _take_lease(
                connection, flow, instance_id=instance_id, owner=owner, lease_until=lease_until
            )
            this_tick = and_(ScheduleTickRow.flow == flow, ScheduleTickRow.tick == tick)
            if running is not None:
                await connection.execute(
                    update(ScheduleTickRow)
                    .where(this_tick)
                    .values(skipped=f"run {running} was still going")
                )
                return TickClaim(claimed=True, running_instance=running)
            await connection.execute(
                update(ScheduleTickRow).where(this_tick).values(instance_id=instance_id)
            )
            return TickClaim(claimed=True, instance_id=instance_id)

    async def take_lease(
        self, flow: str, *, instance_id: str, owner: str, lease_until: datetime
    ) -> str | None:
        """Hold the schedule for `instance_id`; None when taken, else the run still going."""
        async with self._instances.writing() as connection:
            return await _take_lease(
                connection, flow, instance_id=instance_id, owner=owner, lease_until=lease_until
            )

    async def renew(self, flow: str, instance_id: str, lease_until: datetime) -> bool:
        """Push the lease on; false when the run no longer holds it."""
        async with self._instances.writing() as connection:
            renewed = await connection.execute(
                update(ScheduleRow)
                .where(ScheduleRow.flow == flow, ScheduleRow.running_instance == instance_id)
                .values(lease_until=lease_until)
            )
            return renewed.rowcount == 1

    async def release(self, flow: str, instance_id: str) -> None:
        async with self._instances.writing() as connection:
            await connection.execute(
                update(ScheduleRow)
                .where(ScheduleRow.flow == flow, ScheduleRow.running_instance == instance_id)
                .values(running_instance=None, lease_owner=None, lease_until=None)
            )

    async def states(self) -> dict[str, ScheduleState]:
        """Every schedule's row, with its last run as the instance shows it now."""
        now = datetime.now(UTC)
        async with self._instances.engine.connect() as connection:
            rows = (await connection.execute(select(ScheduleRow))).all()
            last_ids = [row.last_instance for row in rows if row.last_instance]
            instances = {
                found.id: found
                for found in (
                    await connection.execute(
                        select(
                            InstanceRow.id,
                            InstanceRow.status,
                            InstanceRow.finished_at,
                            InstanceRow.error,
                            InstanceRow.skipped_reason,
                        ).where(InstanceRow.id.in_(last_ids))
                    )
                ).all()
            }
        states = {}
        for row in rows:
            last_run = None
            if row.last_instance is not None and row.last_started_at is not None:
                found = instances.get(row.last_instance)
                last_run = LastRun(
                    instance_id=row.last_instance,
                    # The lease is taken a moment before the run writes its instance.
                    status=found.status if found is not None else "in_progress",
                    started_at=as_utc(row.last_started_at),
                    finished_at=(
                        as_utc(found.finished_at)
                        if found is not None and found.finished_at is not None
                        else None
                    ),
                    error=found.error if found is not None else None,
                    skipped_reason=found.skipped_reason if found is not None else None,
                )
            lease_until = as_utc(row.lease_until) if row.lease_until is not None else None
            holds = lease_until is not None and lease_until > now
            states[row.flow] = ScheduleState(
                flow=row.flow,
                ticks_through=as_utc(row.ticks_through),
                running_instance=row.running_instance if holds else None,
                last_run=last_run,
            )
        return states


async def _take_lease(
    connection: AsyncConnection,
    flow: str,
    *,
    instance_id: str,
    owner: str,
    lease_until: datetime,
) -> str | None:
    now = datetime.now(UTC)
    taken = await connection.execute(
        update(ScheduleRow)
        .where(
            ScheduleRow.flow == flow,
            # A lapsed lease is the run of a process that died: its schedule is free again.
            or_(ScheduleRow.running_instance.is_(None), ScheduleRow.lease_until < now),
        )
        .values(
            running_instance=instance_id,
            lease_owner=owner,
            lease_until=lease_until,
            last_instance=instance_id,
            last_started_at=now,
        )
    )
    if taken.rowcount == 1:
        return None
    running: str | None = await connection.scalar(
        select(ScheduleRow.running_instance).where(ScheduleRow.flow == flow)
    )
    # None here: the run finished between the two statements, a moment ago.
    return running or "(just finished)"
