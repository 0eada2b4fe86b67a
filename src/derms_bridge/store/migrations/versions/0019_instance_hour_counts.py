"""the dashboard's counts kept as instances are written: the instances that ended (every
status but in_progress) per clock hour of receipt (UTC), flow and status, kept by triggers
on `instances` for every path that inserts, changes or deletes one, and counted from the
instances once here

A flow's run is in progress for the moment between its two writes: counting it there would
take the count of its hour, flow and in_progress up and down again for every flow, four
trigger statements instead of one. The few instances in progress are read from the index
of (status, received_at) instead (store/hour_counts.py).

PostgreSQL: several hub processes write at once, so its triggers only append changes
(hour, flow, status, +n/-n) to `instance_count_changes`, which no one updates; a fold
(store/hour_counts.py) moves them into `instance_hour_counts` now and then. An insert and
the purge's delete are counted per statement, from its transition table: a group commit's
or a purge batch's instances make a few aggregated rows, not one per instance. A change of
status is counted per row, only when the flow, status or time of receipt changed, by a
trigger for the count it leaves and one for the count it joins, each called only when
that count is kept; a TRUNCATE of the instances empties the counts. SQLite has one writer:
its triggers add to the counts directly, and delete a count that reaches 0.

The triggers are made and the instances counted in one transaction: writers wait for the
count (seconds on millions of instances; docs/operations.md, "Upgrading"), and none is
counted twice or missed.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Written out whole, each statement as it runs. PostgreSQL's hour is cut in UTC, not the
# session's zone; SQLite keeps a time as UTC text, "YYYY-MM-DD HH:MM:SS.ffffff", as
# SQLAlchemy writes it, and its hour is written the same way.
_POSTGRES_FUNCTIONS = {
    "instance_counts_inserted": """
        INSERT INTO instance_count_changes (hour, flow, status, change)
        SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
               flow, status, count(*)
        FROM inserted WHERE status <> 'in_progress' GROUP BY 1, 2, 3;""",
    "instance_counts_deleted": """
        INSERT INTO instance_count_changes (hour, flow, status, change)
        SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
               flow, status, -count(*)
        FROM deleted WHERE status <> 'in_progress' GROUP BY 1, 2, 3;""",
    "instance_counts_left": """
        INSERT INTO instance_count_changes (hour, flow, status, change) VALUES
            (date_trunc('hour', OLD.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             OLD.flow, OLD.status, -1);""",
    "instance_counts_joined": """
        INSERT INTO instance_count_changes (hour, flow, status, change) VALUES
            (date_trunc('hour', NEW.received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             NEW.flow, NEW.status, 1);""",
    "instance_counts_truncated": """
        DELETE FROM instance_count_changes;
        DELETE FROM instance_hour_counts;""",
}
_POSTGRES_CHANGED = """(OLD.flow IS DISTINCT FROM NEW.flow
        OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.received_at IS DISTINCT FROM NEW.received_at)"""
_POSTGRES_TRIGGERS = {
    "instance_counts_on_insert": """
        AFTER INSERT ON instances REFERENCING NEW TABLE AS inserted
        FOR EACH STATEMENT EXECUTE FUNCTION instance_counts_inserted()""",
    "instance_counts_on_delete": """
        AFTER DELETE ON instances REFERENCING OLD TABLE AS deleted
        FOR EACH STATEMENT EXECUTE FUNCTION instance_counts_deleted()""",
    "instance_counts_on_update_left": """
        AFTER UPDATE OF flow, status, received_at ON instances FOR EACH ROW
        WHEN (OLD.status <> 'in_progress' AND """
    + _POSTGRES_CHANGED
    + """)
        EXECUTE FUNCTION instance_counts_left()""",
    "instance_counts_on_update_joined": """
        AFTER UPDATE OF flow, status, received_at ON instances FOR EACH ROW
        WHEN (NEW.status <> 'in_progress' AND """
    + _POSTGRES_CHANGED
    + """)
        EXECUTE FUNCTION instance_counts_joined()""",
    "instance_counts_on_truncate": """
        AFTER TRUNCATE ON instances FOR EACH STATEMENT
        EXECUTE FUNCTION instance_counts_truncated()""",
}
_POSTGRES_COUNT = """
    INSERT INTO instance_hour_counts (hour, flow, status, count)
    SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           flow, status, count(*)
    FROM instances WHERE status <> 'in_progress' GROUP BY 1, 2, 3"""

_SQLITE_CHANGED = """(OLD.flow IS NOT NEW.flow OR OLD.status IS NOT NEW.status
        OR OLD.received_at IS NOT NEW.received_at)"""
_SQLITE_JOIN = """
            INSERT INTO instance_hour_counts (hour, flow, status, count)
            VALUES (substr(NEW.received_at, 1, 13) || ':00:00.000000', NEW.flow, NEW.status, 1)
            ON CONFLICT (hour, flow, status) DO UPDATE SET count = count + 1;"""
_SQLITE_LEAVE = """
            UPDATE instance_hour_counts SET count = count - 1
            WHERE hour = substr(OLD.received_at, 1, 13) || ':00:00.000000'
              AND flow = OLD.flow AND status = OLD.status;
            DELETE FROM instance_hour_counts
            WHERE hour = substr(OLD.received_at, 1, 13) || ':00:00.000000'
              AND flow = OLD.flow AND status = OLD.status AND count = 0;"""
_SQLITE_TRIGGERS = {
    "instance_counts_on_insert": f"""
        AFTER INSERT ON instances WHEN NEW.status <> 'in_progress'
        BEGIN {_SQLITE_JOIN} END""",
    "instance_counts_on_delete": f"""
        AFTER DELETE ON instances WHEN OLD.status <> 'in_progress'
        BEGIN {_SQLITE_LEAVE} END""",
    "instance_counts_on_update_left": f"""
        AFTER UPDATE OF flow, status, received_at ON instances
        WHEN OLD.status <> 'in_progress' AND {_SQLITE_CHANGED}
        BEGIN {_SQLITE_LEAVE} END""",
    "instance_counts_on_update_joined": f"""
        AFTER UPDATE OF flow, status, received_at ON instances
        WHEN NEW.status <> 'in_progress' AND {_SQLITE_CHANGED}
        BEGIN {_SQLITE_JOIN} END""",
}
_SQLITE_COUNT = """
    INSERT INTO instance_hour_counts (hour, flow, status, count)
    SELECT substr(received_at, 1, 13) || ':00:00.000000', flow, status, count(*)
    FROM instances WHERE status <> 'in_progress' GROUP BY 1, 2, 3"""


def _key_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    ]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "instance_hour_counts",
        *_key_columns(),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "flow", "status"),
    )
    if postgres:
        # The fold deletes the counts it brought to 0 by this index, not by reading all.
        op.create_index(
            "ix_instance_hour_counts_none",
            "instance_hour_counts",
            ["hour"],
            postgresql_where=sa.text("count = 0"),
        )
        op.create_table(
            "instance_count_changes",
            *_key_columns(),
            sa.Column("change", sa.BigInteger(), nullable=False),
        )
        for name, body in _POSTGRES_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {body} RETURN NULL; END $$"
            )
    # The first trigger locks writers out until this transaction ends: none writes between
    # the triggers' start and the count below.
    for name, definition in (_POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS).items():
        op.execute(f"CREATE TRIGGER {name} {definition}")
    op.execute(_POSTGRES_COUNT if postgres else _SQLITE_COUNT)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON instances" if postgres else ""))
    if postgres:
        for name in _POSTGRES_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        op.drop_table("instance_count_changes")
    op.drop_table("instance_hour_counts")
