"""file jobs and their segments, for the file flows (7, 8); activities by number

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_jobs",
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(8)),
        sa.Column("failure", sa.Text()),
        sa.Column("row_errors", sa.JSON()),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("total_segments", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(80)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("ack_error", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_file_jobs_state", "file_jobs", ["state"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("body_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(80)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_segments_instance_seq", "segments", ["instance_id", "seq"], unique=True)
    op.create_index("ix_segments_status", "segments", ["status"])
    op.create_index("ix_activities_instance_seq", "activities", ["instance_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_activities_instance_seq", "activities")
    op.drop_table("segments")
    op.drop_table("file_jobs")
