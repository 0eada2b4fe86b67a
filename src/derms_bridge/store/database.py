"""Connecting to the database and keeping its schema current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _with_driver(url: str, drivers: dict[str, str]) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"database.url: {backend} is not supported; use sqlite or postgresql")
    parsed = parsed.set(drivername=drivers[backend])
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a flow writes; the busy timeout queues writers
    # instead of failing them when several requests finish at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: str) -> AsyncEngine:
    parsed = _with_driver(url, _ASYNC_DRIVERS)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)


def sqlite_side_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file as `engine`, for work done in a thread
    in one call; None for PostgreSQL or a database in memory. It keeps no connection open
    between uses, so it needs no disposing."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    side = create_engine(url.set(drivername="sqlite"), poolclass=NullPool)
    event.listen(side, "connect", _sqlite_pragmas)
    return side


def migrate(url: str) -> None:
    """Bring the schema to the newest migration (synchronous: run before serving)."""
    config = Config()
    config.set_main_option("script_location", "derms_bridge.store:migrations")
    engine = create_engine(_with_driver(url, _SYNC_DRIVERS))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()
