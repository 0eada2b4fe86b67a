"""instances may have a parent: a flow another flow ran (12 after 11, 14 after 13)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.create_foreign_key("fk_instances_parent_id", "instances", ["parent_id"], ["id"])
        batch.create_index("ix_instances_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_parent_id")
        batch.drop_constraint("fk_instances_parent_id", type_="foreignkey")
        batch.drop_column("parent_id")
