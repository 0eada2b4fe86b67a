"""failed logins of every way in (API, /metrics, console) in one table, each row keeping its
user and its address apart, so that a lockout is by the pair and a login forgives only its
own pair; instead of the console's, which kept a row per key

The console's failures are not carried over: they last minutes, and a row of the old
table cannot say which user and which address failed together.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("console_login_failures")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_digest", sa.String(64), nullable=False),
        sa.Column("address_digest", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_login_failures_user_address", "login_failures", ["user_digest", "address_digest"]
    )
    op.create_index("ix_login_failures_address_digest", "login_failures", ["address_digest"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])


def downgrade() -> None:
    op.drop_table("login_failures")
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
