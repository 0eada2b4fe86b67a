"""the hub processes alive, and the process running each instance

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_processes",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("command", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("instances") as instances:
        instances.add_column(sa.Column("runner", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as instances:
        instances.drop_column("runner")
    op.drop_table("hub_processes")
