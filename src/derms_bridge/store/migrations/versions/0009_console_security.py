"""console sessions logged out of, refused until they would have expired; failed console
logins, counted by every hub process

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_logouts",
        sa.Column("session_digest", sa.String(64), primary_key=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_logouts_until", "console_logouts", ["until"])
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_console_login_failures_key_digest", "console_login_failures", ["key_digest"]
    )
    op.create_index("ix_console_login_failures_at", "console_login_failures", ["at"])


def downgrade() -> None:
    op.drop_table("console_login_failures")
    op.drop_table("console_logouts")
