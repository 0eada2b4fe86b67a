"""Queries on the hub processes alive, and on the runs of those that stopped.

Each hub process writes its row at start, renews `seen_at` at every heartbeat, and marks
it stopped when it ends. Any process may then give up the runs in progress of one that
stopped or has not been heard from: one update fails them and hands their ids to the
process that made it, which emails about them, so each is emailed once; a schedule one of
them held is free again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from derms_bridge.store.instances import InstanceStore, as_utc, utcnow
from derms_bridge.store.tables import BusinessKeyRow, HubProcessRow, InstanceRow, ScheduleRow


@dataclass(frozen=True)
class AbandonedRun:
    """A run in progress whose process stopped: now failed, with `error` saying so."""

    instance_id: str
    flow: str
    error: str
    keys: list[tuple[str, str]]


@dataclass(frozen=True)
class HubProcess:
    name: str
    command: str
    started_at: datetime
    seen_at: datetime


class ProcessStore:
    def __init__(self, instances: InstanceStore) -> None:
        self._instances = instances
        self._insert = (
            postgresql.insert if instances.engine.dialect.name == "postgresql" else sqlite.insert
        )

    async def beat(self, name: str, command: str) -> None:
        """The process is alive now; its row is written again if a sweep took it for
        stopped and removed it (a process paused longer than the limit)."""
        now = utcnow()
        async with self._instances.writing() as connection:
            await connection.execute(
                self._insert(HubProcessRow)
                .values(name=name, command=command, started_at=now, seen_at=now)
                .on_conflict_do_update(index_elements=["name"], set_={"seen_at": now})
            )

    async def stopped(self, name: str) -> None:
        async with self._instances.writing() as connection:
            await connection.execute(
                update(HubProcessRow).where(HubProcessRow.name == name).values(stopped_at=utcnow())
            )

    async def give_up_runs(self, heard_since: datetime) -> list[AbandonedRun]:
        """Fail the runs in progress of every process that stopped, or that has not been
        heard from since `heard_since`, and forget those processes; one transaction."""
        gone = or_(HubProcessRow.stopped_at.is_not(None), HubProcessRow.seen_at < heard_since)
        now = utcnow()
        async with self._instances.writing() as connection:
            failed = (
                await connection.execute(
                    update(InstanceRow)
                    .where(
                        InstanceRow.status == "in_progress",
                        InstanceRow.runner.in_(select(HubProcessRow.name).where(gone)),
                    )
                    .values(
                        status="failed",
                        error=literal("the hub process running it (")
                        + InstanceRow.runner
                        + ") stopped before the run ended; resubmit it, or run it again",
                        finished_at=now,
                        updated_at=now,
                    )
                    .returning(InstanceRow.id, InstanceRow.flow, InstanceRow.error)
                )
            ).all()
            await connection.execute(delete(HubProcessRow).where(gone))
            keys: dict[str, list[tuple[str, str]]] = {}
            if failed:
                # A schedule held by a run given up is free at once, for a run-now.
                await connection.execute(
                    update(ScheduleRow)
                    .where(ScheduleRow.running_instance.in_([row.id for row in failed]))
                    .values(running_instance=None, lease_owner=None, lease_until=None)
                )
                found = await connection.execute(
                    select(BusinessKeyRow.instance_id, BusinessKeyRow.kind, BusinessKeyRow.value)
                    .where(BusinessKeyRow.instance_id.in_([row.id for row in failed]))
                    .order_by(BusinessKeyRow.id)
                )
                for instance_id, kind, value in found:
                    keys.setdefault(instance_id, []).append((kind, value))
        return [
            AbandonedRun(
                instance_id=row.id, flow=row.flow, error=row.error, keys=keys.get(row.id, [])
            )
            for row in failed
        ]

    async def alive(self, heard_since: datetime) -> list[HubProcess]:
        """The processes heard from since `heard_since` that have not stopped, oldest first."""
        async with self._instances.engine.connect() as connection:
            rows = await connection.execute(
                select(
                    HubProcessRow.name,
                    HubProcessRow.command,
                    HubProcessRow.started_at,
                    HubProcessRow.seen_at,
                )
                .where(HubProcessRow.stopped_at.is_(None), HubProcessRow.seen_at >= heard_since)
                .order_by(HubProcessRow.started_at, HubProcessRow.name)
            )
            return [
                HubProcess(
                    name=name,
                    command=command,
                    started_at=as_utc(started_at),
                    seen_at=as_utc(seen_at),
                )
                for name, command, started_at, seen_at in rows
            ]
