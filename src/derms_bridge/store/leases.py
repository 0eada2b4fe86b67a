"""Rows a worker holds under a lease: claimed one at a time, renewed while the work runs,
given back when it is done.

A claim is a conditional update (a row is taken only if it is still due when the update
runs), so two workers never take the same row; on PostgreSQL the candidate is also
selected FOR UPDATE SKIP LOCKED, so that workers on several machines pass each other by
instead of waiting. A lease that runs out is a worker that died: the row is due again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from derms_bridge.store.tables import FileJobRow, StagedFileRow

#: The tables whose rows are held under a lease, one row an instance.
LeasedTable = type[FileJobRow] | type[StagedFileRow]


@dataclass(frozen=True)
class Leases:
    """Claims, renewals and releases of `table`'s rows, each in the caller's transaction."""

    table: LeasedTable
    postgres: bool

    async def any_due(self, engine: AsyncEngine, due: ColumnElement[bool]) -> bool:
        """Whether a row is `due` (or, for a sweep, might be), read without a write: a
        worker's round that finds none
        need not take SQLite's one writer (2 to 10 ms a round through aiosqlite, while the
        flows' commits waited behind it). A row due a moment later is claimed next round,
        as it would be had it come just after the claim."""
        async with engine.connect() as connection:
            found = await connection.scalar(select(self.table.instance_id).where(due).limit(1))
        return found is not None

    async def claim(
        self,
        connection: AsyncConnection,
        due: ColumnElement[bool],
        *,
        owner: str,
        until: datetime,
        returning: Sequence[Any] = (),
        **values: Any,
    ) -> Row[Any] | None:
        """The row `due` the longest, held by `owner` until `until` and given `values`;
        its instance id then `returning`. None when no row is due, or another worker
        took it first."""
        table = self.table
        candidates = select(table.instance_id).where(due).order_by(table.updated_at).limit(1)
        if self.postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        found = await connection.scalar(candidates)
        if found is None:
            return None
        claimed = await connection.execute(
            update(table)
            .where(table.instance_id == found, due)
            .values(owner=owner, lease_until=until, **values)
            .returning(table.instance_id, *returning)
        )
        return claimed.first()

    async def renew(
        self, connection: AsyncConnection, instance_id: str, owner: str, until: datetime
    ) -> None:
        """Hold the row `owner` still holds until `until`, so that slow work is not taken up
        a second time."""
        table = self.table
        await connection.execute(
            update(table)
            .where(table.instance_id == instance_id, table.owner == owner)
            .values(lease_until=until)
        )

    async def release(
        self, connection: AsyncConnection, instance_id: str, owner: str, **values: Any
    ) -> bool:
        """Give back the row `owner` holds, with `values`; False when its lease ran out and
        another worker holds it now."""
        table = self.table
        released = await connection.execute(
            update(table)
            .where(table.instance_id == instance_id, table.owner == owner)
            .values(owner=None, lease_until=None, **values)
        )
        return released.rowcount == 1
