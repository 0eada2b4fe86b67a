"""The record of who changed which lookup rows, and when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from derms_bridge.lookup_tables import RowChange
from derms_bridge.store.instances import InstanceStore, as_utc, utcnow
from derms_bridge.store.tables import LookupAuditRow


@dataclass(frozen=True)
class LookupEdit:
    lookup: str
    operator: str
    at: datetime
    changes: tuple[RowChange, ...]


async def record_edit(
    store: InstanceStore, lookup: str, operator: str, changes: Sequence[RowChange]
) -> None:
    async with store.writing() as connection:
        await connection.execute(
            insert(LookupAuditRow).values(
                lookup=lookup,
                operator=operator,
                at=utcnow(),
                changes=[
                    {
                        "key": change.key,
                        "before": list(change.before) if change.before is not None else None,
                        "after": list(change.after) if change.after is not None else None,
                    }
                    for change in changes
                ],
            )
        )


async def recent_edits(store: InstanceStore, lookup: str, limit: int = 20) -> list[LookupEdit]:
    """The newest edits of one lookup first."""
    query = (
        select(LookupAuditRow)
        .where(LookupAuditRow.lookup == lookup)
        .order_by(LookupAuditRow.at.desc(), LookupAuditRow.id.desc())
        .limit(limit)
    )
    async with store.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        LookupEdit(
            lookup=row.lookup,
            operator=row.operator,
            at=as_utc(row.at),
            changes=tuple(
                RowChange(
                    key=change["key"],
                    before=tuple(change["before"]) if change["before"] is not None else None,
                    after=tuple(change["after"]) if change["after"] is not None else None,
                )
                for change in row.changes
            ),
        )
        for row in rows
    ]
