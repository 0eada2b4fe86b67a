"""PostgreSQL: no foreign key names instances any more (business_keys, activities,
error_notices, file_jobs, segments, staged_files; instances' own resubmit_of and parent_id)

Each one's check ran once per deleted instance, eight per instance, in the purge: 70 % of a
batch's time (bench/README.md, store_scale.py). The store keeps what they kept: the purge
deletes an instance's rows with it, in one statement, and never an instance another names;
a resubmit of an instance the purge took refuses (store/instances.py). Dropping a
constraint reads no table: the upgrade takes each table's lock for a moment.

SQLite keeps them: dropping one there rewrites its table (millions of rows), and its checks
cost little beside a deletion's page writes.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: name: (table, column, ON DELETE), as migrations 0001-0005 made them.
_NAMING_INSTANCES: dict[str, tuple[str, str, str | None]] = {
    "instances_resubmit_of_fkey": ("instances", "resubmit_of", None),
    "fk_instances_parent_id": ("instances", "parent_id", None),
    "business_keys_instance_id_fkey": ("business_keys", "instance_id", "CASCADE"),
    "activities_instance_id_fkey": ("activities", "instance_id", "CASCADE"),
    "error_notices_instance_id_fkey": ("error_notices", "instance_id", "CASCADE"),
    "file_jobs_instance_id_fkey": ("file_jobs", "instance_id", "CASCADE"),
    "segments_instance_id_fkey": ("segments", "instance_id", "CASCADE"),
    "staged_files_instance_id_fkey": ("staged_files", "instance_id", "CASCADE"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _, _) in _NAMING_INSTANCES.items():
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "{name}"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # NOT VALID first, then validated: the check of the rows already there takes no lock
    # that stops writes.
    for name, (table, column, on_delete) in _NAMING_INSTANCES.items():
        cascade = f" ON DELETE {on_delete}" if on_delete else ""
        op.execute(
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" FOREIGN KEY ({column}) '
            f"REFERENCES instances (id){cascade} NOT VALID"
        )
        op.execute(f'ALTER TABLE {table} VALIDATE CONSTRAINT "{name}"')
