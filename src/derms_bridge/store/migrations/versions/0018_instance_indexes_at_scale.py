"""instances indexed for millions of them: the dashboard's counts of a window, a flow's
instances newest first and the failed ones of a window read from an index each,
(received_at, flow, status), (flow, received_at, status) and (status, received_at), which
take the place of those of received_at, flow and status alone; of resubmit_of and
parent_id, only the few instances that name another are indexed

On PostgreSQL each index is built and dropped CONCURRENTLY, outside a transaction: the hub
goes on writing meanwhile (docs/operations.md, "Upgrading"). A build that stopped half-way
leaves an INVALID index, which the upgrade run again drops and builds anew.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: name: (columns, the rows indexed; None: all).
_BUILT: dict[str, tuple[list[str], str | None]] = {
    "ix_instances_received_flow_status": (["received_at", "flow", "status"], None),
    "ix_instances_flow_received_status": (["flow", "received_at", "status"], None),
    "ix_instances_status_received": (["status", "received_at"], None),
    "ix_instances_resubmit_of_set": (["resubmit_of"], "resubmit_of IS NOT NULL"),
    "ix_instances_parent_id_set": (["parent_id"], "parent_id IS NOT NULL"),
}
#: The indexes those take the place of.
_REPLACED: dict[str, tuple[list[str], str | None]] = {
    "ix_instances_received_at": (["received_at"], None),
    "ix_instances_flow": (["flow"], None),
    "ix_instances_status": (["status"], None),
    "ix_instances_resubmit_of": (["resubmit_of"], None),
    "ix_instances_parent_id": (["parent_id"], None),
}


def _build(indexes: dict[str, tuple[list[str], str | None]]) -> None:
    for name, (columns, where) in indexes.items():
        _drop([name])
        condition = sa.text(where) if where else None
        op.create_index(
            name,
            "instances",
            columns,
            postgresql_concurrently=True,
            postgresql_where=condition,
            sqlite_where=condition,
        )


def _drop(names: list[str]) -> None:
    for name in names:
        op.drop_index(name, "instances", postgresql_concurrently=True, if_exists=True)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _build(_BUILT)
        _drop(list(_REPLACED))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _build(_REPLACED)
        _drop(list(_BUILT))
