"""segments keep their body zlib-compressed: about 45 times smaller for a reservation
file, so that claiming a segment or recording its result rewrites a row of a few kilobytes,
not one whose JSON body runs over dozens of SQLite overflow pages

Revision ID: 0007
Revises: 0003
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None

_segments = sa.table(
    "segments",
    sa.column("id", sa.Integer()),
    sa.column("body_json", sa.Text()),
    sa.column("body_zlib", sa.LargeBinary()),
)


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("body_zlib", sa.LargeBinary()))
    connection = op.get_bind()
    # One segment at a time: a file's bodies can run to hundreds of megabytes.
    for segment_id in connection.scalars(sa.select(_segments.c.id)).all():
        body = connection.execute(
            sa.select(_segments.c.body_json).where(_segments.c.id == segment_id)
        ).scalar_one()
        connection.execute(
            sa.update(_segments)
            .where(_segments.c.id == segment_id)
            .values(body_zlib=zlib.compress(body.encode(), 1))
        )
    with op.batch_alter_table("segments") as batch:
        batch.alter_column("body_zlib", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("body_json")


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("body_json", sa.Text()))
    connection = op.get_bind()
    for segment_id in connection.scalars(sa.select(_segments.c.id)).all():
        body = connection.execute(
            sa.select(_segments.c.body_zlib).where(_segments.c.id == segment_id)
        ).scalar_one()
        connection.execute(
            sa.update(_segments)
            .where(_segments.c.id == segment_id)
            .values(body_json=zlib.decompress(body).decode())
        )
    with op.batch_alter_table("segments") as batch:
        batch.alter_column("body_json", existing_type=sa.Text(), nullable=False)
        batch.drop_column("body_zlib")
