"""instances, their business keys, activities and error notices

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(64)),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("reply", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resubmit_of", sa.String(36), sa.ForeignKey("instances.id")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_instances_flow", "instances", ["flow"])
    op.create_index("ix_instances_status", "instances", ["status"])
    op.create_index("ix_instances_received_at", "instances", ["received_at"])
    op.create_index("ix_instances_resubmit_of", "instances", ["resubmit_of"])
    op.create_table(
        "business_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_index("ix_business_keys_instance_id", "business_keys", ["instance_id"])
    op.create_index("ix_business_keys_value_kind", "business_keys", ["value", "kind"])
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8)),
        sa.Column("path", sa.String(400)),
        sa.Column("http_status", sa.Integer()),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_activities_instance_id", "activities", ["instance_id"])
    op.create_table(
        "error_notices",
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("error_notices")
    op.drop_table("activities")
    op.drop_table("business_keys")
    op.drop_table("instances")
