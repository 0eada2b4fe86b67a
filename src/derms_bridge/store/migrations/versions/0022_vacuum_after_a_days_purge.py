"""autovacuum visits instances, business_keys and activities once a hundredth of each is
dead (about a day's purge with 90 days kept), where PostgreSQL's default waits for a fifth
(some 18 days of purges). Instance ids follow time (UUIDv7), so the purged days' entries
are the smallest ids of these tables' indexes, and until vacuum removes them the planner
steps over each one when it reads a column's smallest value: a search by business
identifier took 9 to 11 ms instead of 3 to 4 at 5,000,000 instances with 13 days purged
(bench/README.md, "The purge, a fifth time").

A table's storage parameters change under a lock that lets reads and writes go on.
Nothing on SQLite, which has no autovacuum.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

PURGED_TABLES = ("instances", "business_keys", "activities")
VACUUM_SCALE_FACTOR = 0.01


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in PURGED_TABLES:
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = {VACUUM_SCALE_FACTOR})"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in PURGED_TABLES:
        op.execute(f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor)")
