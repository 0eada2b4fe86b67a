"""file jobs keep the rows they set aside (flows 7, 8): how many, the first 1,000 named
(line, recordId, why), and all of them as they came, zlib-compressed, for the download;
instead of the reasons a refused file named

A file refused before this kept no rows: its reasons become rows set aside, named by line.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_file_jobs = sa.table(
    "file_jobs",
    sa.column("instance_id", sa.String()),
    sa.column("row_errors", sa.JSON()),
    sa.column("rows_set_aside", sa.Integer()),
    sa.column("set_aside", sa.JSON()),
)

_LINE = re.compile(r"line (\d+): (.*)", re.DOTALL)


def _named(row_error: str) -> dict[str, object]:
    found = _LINE.fullmatch(row_error)
    if found is None:
        return {"line": 0, "record_id": None, "reason": row_error}
    return {"line": int(found[1]), "record_id": None, "reason": found[2]}


def upgrade() -> None:
    with op.batch_alter_table("file_jobs") as batch:
        batch.add_column(
            sa.Column("rows_set_aside", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("set_aside", sa.JSON()))
        batch.add_column(sa.Column("set_aside_zlib", sa.LargeBinary()))
    connection = op.get_bind()
    refused = connection.execute(
        sa.select(_file_jobs.c.instance_id, _file_jobs.c.row_errors).where(
            _file_jobs.c.row_errors.is_not(None)
        )
    ).all()
    for instance_id, row_errors in refused:
        named = [_named(error) for error in row_errors or []]
        connection.execute(
            sa.update(_file_jobs)
            .where(_file_jobs.c.instance_id == instance_id)
            .values(rows_set_aside=len(named), set_aside=named)
        )
    with op.batch_alter_table("file_jobs") as batch:
        batch.drop_column("row_errors")


def downgrade() -> None:
    with op.batch_alter_table("file_jobs") as batch:
        batch.add_column(sa.Column("row_errors", sa.JSON()))
    connection = op.get_bind()
    named_rows = connection.execute(
        sa.select(_file_jobs.c.instance_id, _file_jobs.c.set_aside).where(
            _file_jobs.c.set_aside.is_not(None)
        )
    ).all()
    for instance_id, named in named_rows:
        connection.execute(
            sa.update(_file_jobs)
            .where(_file_jobs.c.instance_id == instance_id)
            .values(row_errors=[f"line {row['line']}: {row['reason']}" for row in named or []])
        )
    with op.batch_alter_table("file_jobs") as batch:
        batch.drop_column("set_aside_zlib")
        batch.drop_column("set_aside")
        batch.drop_column("rows_set_aside")
