"""a skipped instance's reason in a column of its own, out of `error`; the last error email
about a caller's rejected messages, so that a burst of them is one email

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("skipped_reason", sa.Text()))
    op.execute("UPDATE instances SET skipped_reason = error, error = NULL WHERE status = 'skipped'")
    op.create_table(
        "rejection_emails",
        sa.Column("caller", sa.String(64), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rejection_emails")
    op.execute(
        "UPDATE instances SET error = skipped_reason WHERE status = 'skipped' AND error IS NULL"
    )
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("skipped_reason")
