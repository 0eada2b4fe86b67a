"""file jobs keep the DERMS connection that sent the file and the MsgAck their run sent,
so that the acknowledgement goes back to that DERMS, and can be sent again as it was

A job received before this revision has neither: its acknowledgement goes to the Routing
lookup's `*` row, and can be sent again only once a run has sent one.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_jobs") as batch:
        batch.add_column(sa.Column("derms_connection", sa.String(80), nullable=True))
        batch.add_column(sa.Column("ack", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("file_jobs") as batch:
        batch.drop_column("ack")
        batch.drop_column("derms_connection")
