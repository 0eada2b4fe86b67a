"""Migrations on a database that holds instances, on both databases: 0018 builds the indexes
the console's queries read (CONCURRENTLY on PostgreSQL, outside any transaction), keeps
every row, builds anew an index a stopped build left behind, and goes back down; 0019
counts the instances kept for the dashboard and leaves triggers counting on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, inspect, text

from derms_bridge.store.database import migrate
from tests.conftest import POSTGRES_ADMIN_URL, _backends

NEW_INDEXES = {
    "ix_instances_received_flow_status": ["received_at", "flow", "status"],
    "ix_instances_flow_received_status": ["flow", "received_at", "status"],
    "ix_instances_status_received": ["status", "received_at"],
    "ix_instances_resubmit_of_set": ["resubmit_of"],
    "ix_instances_parent_id_set": ["parent_id"],
}
REPLACED = {"ix_instances_received_at", "ix_instances_flow", "ix_instances_status"}


@pytest.fixture(params=_backends())
def fresh_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own, not migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('migrations') / 'hub.db'}"
        return
    name = f"derms_bridge_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def to_revision(url: str, revision: str, *, down: bool = False) -> None:
    """The schema at `revision`, as `migrate` brings it to the head."""
    config = Config()
    config.set_main_option("script_location", "derms_bridge.store:migrations")
    engine = _engine(url)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def with_instances(url: str) -> list[str]:
    """Three instances, the last a resubmit of the first; their ids."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    now = datetime.now(UTC)
    engine = _engine(url)
    with engine.begin() as connection:
        for instance_id, resubmit_of in zip(ids, [None, None, ids[0]], strict=True):
            connection.execute(
                text(
                    "INSERT INTO instances (id, flow, status, payload, attempts, resubmit_of, "
                    "received_at, updated_at) VALUES (:id, 'enrollment_request', 'failed', "
                    "'{}', 1, :resubmit_of, :now, :now)"
                ),
                {"id": instance_id, "resubmit_of": resubmit_of, "now": now},
            )
    engine.dispose()
    return ids


def indexes(url: str) -> dict[str, list[str]]:
    engine = _engine(url)
    found = {
        index["name"]: [str(column) for column in index["column_names"]]
        for index in inspect(engine).get_indexes("instances")
        if index["name"]
    }
    engine.dispose()
    return found


def invalid_indexes(url: str) -> list[str]:
    """PostgreSQL's indexes a build stopped half-way left unusable; none on SQLite."""
    if not url.startswith("postgresql"):
        return []
    engine = _engine(url)
    with engine.connect() as connection:
        names = connection.scalars(
            text("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
        ).all()
    engine.dispose()
    return list(names)


def instance_ids(url: str) -> set[str]:
    engine = _engine(url)
    with engine.connect() as connection:
        found = set(connection.scalars(text("SELECT id FROM instances")).all())
    engine.dispose()
    return found


def test_an_upgrade_keeps_the_instances_and_builds_the_indexes(fresh_url: str) -> None:
    to_revision(fresh_url, "0015")
    ids = with_instances(fresh_url)

    migrate(fresh_url)

    found = indexes(fresh_url)
    assert {name: found.get(name) for name in NEW_INDEXES} == NEW_INDEXES
    assert not REPLACED & found.keys()
    assert invalid_indexes(fresh_url) == []
    assert instance_ids(fresh_url) == set(ids)


def test_an_index_a_stopped_upgrade_left_behind_is_built_anew(fresh_url: str) -> None:
    to_revision(fresh_url, "0015")
    engine = _engine(fresh_url)
    with engine.begin() as connection:
        # What a build stopped half-way leaves: an index of the name, not the one wanted.
        connection.execute(
            text("CREATE INDEX ix_instances_received_flow_status ON instances (status)")
        )
    engine.dispose()

    migrate(fresh_url)

    assert indexes(fresh_url)["ix_instances_received_flow_status"] == [
        "received_at",
        "flow",
        "status",
    ]


def test_a_downgrade_puts_the_indexes_back_as_they_were(fresh_url: str) -> None:
    to_revision(fresh_url, "0015")
    before = indexes(fresh_url)
    ids = with_instances(fresh_url)
    migrate(fresh_url)

    to_revision(fresh_url, "0015", down=True)

    assert indexes(fresh_url) == before
    assert instance_ids(fresh_url) == set(ids)


def foreign_keys_naming_instances(url: str) -> set[tuple[str, str]]:
    """(table, column) of each foreign key that names instances."""
    engine = _engine(url)
    found = {
        (table, column)
        for table in inspect(engine).get_table_names()
        for key in inspect(engine).get_foreign_keys(table)
        if key["referred_table"] == "instances"
        for column in key["constrained_columns"]
    }
    engine.dispose()
    return found


def test_no_foreign_key_names_instances_on_postgresql_and_a_downgrade_puts_them_back(
    fresh_url: str,
) -> None:
    to_revision(fresh_url, "0018")
    before = foreign_keys_naming_instances(fresh_url)
    ids = with_instances(fresh_url)

    migrate(fresh_url)

    after = foreign_keys_naming_instances(fresh_url)
    assert after == (set() if fresh_url.startswith("postgresql") else before)
    assert ("business_keys", "instance_id") in before
    assert ("instances", "resubmit_of") in before
    to_revision(fresh_url, "0018", down=True)
    assert foreign_keys_naming_instances(fresh_url) == before
    assert instance_ids(fresh_url) == set(ids)


def hour_counts(url: str) -> list[tuple[str, str, int]]:
    engine = _engine(url)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT flow, status, count FROM instance_hour_counts ORDER BY status")
        ).all()
    engine.dispose()
    return [(flow, status, count) for flow, status, count in found]


def test_the_upgrade_counts_the_instances_kept_and_the_triggers_count_on(fresh_url: str) -> None:
    to_revision(fresh_url, "0018")
    ids = with_instances(fresh_url)

    migrate(fresh_url)

    assert hour_counts(fresh_url) == [("enrollment_request", "failed", 3)]
    engine = _engine(fresh_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE instances SET status = 'resolved' WHERE id = :id"), {"id": ids[0]}
        )
    engine.dispose()
    if fresh_url.startswith("postgresql"):
        # Appended for the next fold (tests/integration/engine/test_hour_counts.py).
        engine = _engine(fresh_url)
        with engine.connect() as connection:
            changes = connection.execute(
                text("SELECT status, change FROM instance_count_changes ORDER BY status")
            ).all()
        engine.dispose()
        assert [tuple(row) for row in changes] == [("failed", -1), ("resolved", 1)]
        engine = _engine(fresh_url)
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE instances CASCADE"))
        engine.dispose()
        assert hour_counts(fresh_url) == []
    else:
        assert hour_counts(fresh_url) == [
            ("enrollment_request", "failed", 2),
            ("enrollment_request", "resolved", 1),
        ]


def test_a_downgrade_drops_the_counts_and_their_triggers(fresh_url: str) -> None:
    migrate(fresh_url)
    with_instances(fresh_url)

    to_revision(fresh_url, "0018", down=True)
    ids = with_instances(fresh_url)

    tables = inspect(_engine(fresh_url)).get_table_names()
    assert "instance_hour_counts" not in tables
    assert "instance_count_changes" not in tables
    assert set(ids) <= instance_ids(fresh_url)


def vacuum_scale_factors(url: str) -> dict[str, str | None]:
    """Each purged table's own autovacuum_vacuum_scale_factor, None where it has none."""
    engine = _engine(url)
    with engine.connect() as connection:
        found = {
            table: next(
                (
                    option.split("=", 1)[1]
                    for option in options or []
                    if option.startswith("autovacuum_vacuum_scale_factor=")
                ),
                None,
            )
            for table, options in connection.execute(
                text(
                    "SELECT relname, reloptions FROM pg_class"
                    " WHERE relname IN ('instances', 'business_keys', 'activities')"
                )
            )
        }
    engine.dispose()
    return found


def test_autovacuum_visits_the_purged_tables_after_a_days_purge_and_a_downgrade_resets_it(
    fresh_url: str,
) -> None:
    if not fresh_url.startswith("postgresql"):
        pytest.skip("autovacuum is PostgreSQL's")
    to_revision(fresh_url, "0021")
    ids = with_instances(fresh_url)

    migrate(fresh_url)

    purged = ("instances", "business_keys", "activities")
    assert vacuum_scale_factors(fresh_url) == dict.fromkeys(purged, "0.01")
    to_revision(fresh_url, "0021", down=True)
    assert vacuum_scale_factors(fresh_url) == dict.fromkeys(purged, None)
    assert instance_ids(fresh_url) == set(ids)
