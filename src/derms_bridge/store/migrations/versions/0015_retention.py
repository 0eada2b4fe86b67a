"""retention: an instance records when its payloads and file rows were purged, and the
purge finds what expired by flow, status and end time

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_PAYLOAD_KEPT = sa.text("payload_purged_at IS NULL")


def upgrade() -> None:
    # A nullable column without a default: a plain ALTER on both databases, no rewrite.
    op.add_column(
        "instances", sa.Column("payload_purged_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Built CONCURRENTLY on PostgreSQL, outside the transaction, so that the hub goes on
    # writing meanwhile; a build stopped half-way leaves an INVALID index, built anew.
    with op.get_context().autocommit_block():
        for name in ("ix_instances_flow_status_finished", "ix_instances_payload_kept"):
            op.drop_index(name, "instances", postgresql_concurrently=True, if_exists=True)
        op.create_index(
            "ix_instances_flow_status_finished",
            "instances",
            ["flow", "status", "finished_at"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_instances_payload_kept",
            "instances",
            ["flow", "status", "finished_at"],
            sqlite_where=_PAYLOAD_KEPT,
            postgresql_where=_PAYLOAD_KEPT,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("ix_instances_payload_kept", "instances")
    op.drop_index("ix_instances_flow_status_finished", "instances")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("payload_purged_at")
