"""the failures bulk resubmit could send again, indexed by flow and time: its selection of
one flow over all time read 49,516 rows from the table to count them at 5,000,000
instances (693 ms); from this partial index alone, 106 ms (bench/README.md, store_scale.py);
and activities lose their index of instance_id alone, which repeats the front of
(instance_id, seq): one index fewer written with every call a flow makes

Built and dropped CONCURRENTLY on PostgreSQL, as 0018's: the hub goes on writing meanwhile.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_FAILED_KEPT = "ix_instances_failed_kept"
_ACTIVITIES_BY_INSTANCE = "ix_activities_instance_id"


def _drop(name: str, table: str) -> None:
    op.drop_index(name, table, postgresql_concurrently=True, if_exists=True)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build that stopped half-way left an INVALID index: built anew.
        _drop(_FAILED_KEPT, "instances")
        rows = sa.text("status = 'failed' AND payload_purged_at IS NULL")
        op.create_index(
            _FAILED_KEPT,
            "instances",
            ["flow", "received_at", "id"],
            postgresql_concurrently=True,
            postgresql_where=rows,
            sqlite_where=rows,
        )
        _drop(_ACTIVITIES_BY_INSTANCE, "activities")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _drop(_ACTIVITIES_BY_INSTANCE, "activities")
        op.create_index(
            _ACTIVITIES_BY_INSTANCE, "activities", ["instance_id"], postgresql_concurrently=True
        )
        _drop(_FAILED_KEPT, "instances")
