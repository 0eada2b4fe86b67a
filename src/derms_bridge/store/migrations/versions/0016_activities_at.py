"""activities found by when they ended: the dashboard's latency per target reads the calls
of the last hour, day or week, and would read every activity kept without it

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
    op.create_index("ix_activities_at", "activities", ["at"])


def downgrade() -> None:
    op.drop_index("ix_activities_at", "activities")
