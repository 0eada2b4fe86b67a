"""activities found by when they ended: the dashboard's latency per target reads the calls
of the last hour, day or week, and would read every activity kept without it

On PostgreSQL built CONCURRENTLY, outside a transaction: the hub goes on writing meanwhile
(docs/operations.md, "Upgrading a large database"); a build that stopped half-way leaves an
INVALID index, which the upgrade run again drops and builds anew.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_activities_at", "activities", postgresql_concurrently=True, if_exists=True
        )
        op.create_index("ix_activities_at", "activities", ["at"], postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_activities_at", "activities", postgresql_concurrently=True)
