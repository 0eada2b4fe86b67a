"""schedules and their claimed ticks, for the scheduled flows (16, 17)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("flow", sa.String(64), primary_key=True),
        sa.Column("ticks_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("running_instance", sa.String(36)),
        sa.Column("lease_owner", sa.String(80)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_instance", sa.String(36)),
        sa.Column("last_started_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "schedule_ticks",
        sa.Column("flow", sa.String(64), primary_key=True),
        sa.Column("tick", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instance_id", sa.String(36)),
        sa.Column("skipped", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("schedule_ticks")
    op.drop_table("schedules")
