"""The writes every flow makes, its instance and its outcome, as pieces of work that a group
commit can share (store/group_commit.py), with their statements built once: made per write,
building and keying a statement cost more than SQLite took to run it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, update

from derms_bridge.schemas.ops import Activity
from derms_bridge.store.tables import ActivityRow, BusinessKeyRow, InstanceRow

_INSTANCES = cast(Table, InstanceRow.__table__)
_INSERT_INSTANCE = insert(_INSTANCES)
_INSERT_KEYS = insert(cast(Table, BusinessKeyRow.__table__))
_INSERT_ACTIVITIES = insert(cast(Table, ActivityRow.__table__))
_OUTCOME_FIELDS = ("status", "reply", "error", "skipped_reason", "updated_at", "finished_at")
_RECORD_OUTCOME = (
    update(_INSTANCES)
    .where(_INSTANCES.c.id == bindparam("finished_id"))
    .values({field: bindparam(f"new_{field}") for field in _OUTCOME_FIELDS})
)


def created(row: dict[str, Any], keys: Sequence[tuple[str, str]]) -> Callable[[Connection], None]:
    """A first run's instance, as a write that a group commit can share."""

    def write(connection: Connection) -> None:
        connection.execute(_INSERT_INSTANCE, {**row, "attempts": 1})
        if rows := key_rows(row["id"], keys):
            connection.execute(_INSERT_KEYS, rows)

    return write


def finished(
    instance_id: str,
    outcome: dict[str, Any],
    activities: Sequence[Activity],
    keys: Sequence[tuple[str, str]],
) -> Callable[[Connection], None]:
    """A run's outcome, its activities numbered from 1, as a write that a group commit can
    share."""
    recorded = {"finished_id": instance_id, **{f"new_{k}": v for k, v in outcome.items()}}

    def write(connection: Connection) -> None:
        connection.execute(_RECORD_OUTCOME, recorded)
        if activities:
            connection.execute(
                _INSERT_ACTIVITIES,
                [
                    {"instance_id": instance_id, "seq": n, **vars(activity)}
                    for n, activity in enumerate(activities, start=1)
                ],
            )
        if rows := key_rows(instance_id, keys):
            connection.execute(_INSERT_KEYS, rows)

    return write


def key_rows(instance_id: str, keys: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """An instance's business keys as rows, each kind and value once."""
    unique = dict.fromkeys((kind, value[:200]) for kind, value in keys if value)
    return [{"instance_id": instance_id, "kind": k, "value": v} for k, v in unique]
