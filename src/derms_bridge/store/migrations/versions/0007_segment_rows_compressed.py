"""segments keep their rows as CSV, zlib-compressed, instead of their JSON body: the body
is built as a segment goes, so that the intake only checks the rows, and a segment's row
is a few kilobytes, so that claiming it or recording its result does not rewrite dozens
of SQLite overflow pages

A JSON body cannot be turned back into the rows it came from (the recordId is left out,
outcomes are translated), so the upgrade wants every segment kept to be accepted already:
let the files in flight finish first.

Revision ID: 0007
Revises: 0003
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_segments = sa.table(
    "segments",
    sa.column("status", sa.String()),
    sa.column("rows_zlib", sa.LargeBinary()),
    sa.column("body_json", sa.Text()),
)


def _all_sent() -> None:
    unsent = (
        op.get_bind()
        .execute(sa.select(sa.func.count()).where(_segments.c.status != "accepted"))
        .scalar_one()
    )
    if unsent:
        raise RuntimeError(
            f"{unsent} segments are still to be sent: let their files finish, then migrate"
        )


def upgrade() -> None:
    _all_sent()
    connection = op.get_bind()
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("rows_zlib", sa.LargeBinary()))
    # Sent already: their rows are not needed again.
    connection.execute(sa.update(_segments).values(rows_zlib=zlib.compress(b"")))
    with op.batch_alter_table("segments") as batch:
        batch.alter_column("rows_zlib", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("body_json")


def downgrade() -> None:
    _all_sent()
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("body_json", sa.Text()))
    op.get_bind().execute(sa.update(_segments).values(body_json=""))
    with op.batch_alter_table("segments") as batch:
        batch.alter_column("body_json", existing_type=sa.Text(), nullable=False)
        batch.drop_column("rows_zlib")
