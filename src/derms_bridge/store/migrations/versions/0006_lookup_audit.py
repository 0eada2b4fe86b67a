"""who changed which lookup rows, from the console

Revision ID: 0006
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lookup_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lookup", sa.String(80), nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
    )
    op.create_index("ix_lookup_audit_lookup", "lookup_audit", ["lookup"])
    op.create_index("ix_lookup_audit_at", "lookup_audit", ["at"])


def downgrade() -> None:
    op.drop_table("lookup_audit")
