"""Connecting to the database and keeping its schema current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_T = TypeVar("_T")

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


class SqliteSideConnection:
    """A synchronous connection to the same SQLite file as an async engine, for work done in
    one call off the event loop: each piece of work is a transaction, run on the one thread
    that this connection keeps. The connection stays open between uses: opening one costs its
    pragmas and a reading of the schema, about 0.4 ms of CPU, ten times what taking up an open
    one does, and a file's segments take a round of work every few of them. `close` it when
    the hub stops."""

    def __init__(self, url: URL) -> None:
        self._engine = create_engine(url.set(drivername="sqlite"), pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-side")
        #: Opened on the thread by the first piece of work.
        self._connection: Connection | None = None
        self._closed = False

    async def run(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in a transaction of its own, on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._in_transaction, work
        )

    def _in_transaction(self, work: Callable[[Connection], _T]) -> _T:
        if self._connection is None:
            self._connection = self._engine.connect()
        with self._connection.begin():
            return work(self._connection)

    async def close(self) -> None:
        """Close the connection, once the work under way is done, and end its thread; again,
        nothing."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()


def sqlite_side_connection(engine: AsyncEngine) -> SqliteSideConnection | None:
    """A side connection to `engine`'s SQLite file; None for PostgreSQL or a database in
    memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return SqliteSideConnection(url)


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
