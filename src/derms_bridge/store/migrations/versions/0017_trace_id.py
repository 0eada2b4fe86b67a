"""trace_id: an instance keeps its trace id and the span of the instance in it
(docs/tracing.md), found by trace id

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: a plain ALTER on both databases, no rewrite.
    op.add_column("instances", sa.Column("trace_id", sa.String(32), nullable=True))
    op.add_column("instances", sa.Column("trace_span_id", sa.String(16), nullable=True))
    # Built CONCURRENTLY on PostgreSQL, as 0016's: writes go on meanwhile.
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_instances_trace_id", "instances", postgresql_concurrently=True, if_exists=True
        )
        op.create_index(
            "ix_instances_trace_id", "instances", ["trace_id"], postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_instances_trace_id", "instances", postgresql_concurrently=True)
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("trace_span_id")
        batch.drop_column("trace_id")
