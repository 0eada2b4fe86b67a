"""the failures bulk resubmit could send again, indexed by flow and time: its selection of
one flow over all time read 49,516 rows from the table to count them at 5,000,000
instances (693 ms); from this partial index alone, 106 ms (bench/README.md, store_scale.py)

Built CONCURRENTLY on PostgreSQL, as 0018's: the hub goes on writing meanwhile.

Revision ID: 0021
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0018"
branch_labels = None
depends_on = None

_NAME = "ix_instances_failed_kept"
_ROWS = sa.text("status = 'failed' AND payload_purged_at IS NULL")


def _drop() -> None:
    op.drop_index(_NAME, "instances", postgresql_concurrently=True, if_exists=True)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build that stopped half-way left an INVALID index: built anew.
        _drop()
        op.create_index(
            _NAME,
            "instances",
            ["flow", "received_at", "id"],
            postgresql_concurrently=True,
            postgresql_where=_ROWS,
            sqlite_where=_ROWS,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _drop()
