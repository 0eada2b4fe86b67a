"""Connecting to the database and keeping its schema current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Dialect, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from derms_bridge.errors import DatabaseUnavailable

_T = TypeVar("_T")

log = logging.getLogger(__name__)

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


#: Pages of write-ahead log (4 KiB each) past which a commit checkpoints them itself, ten
#: times SQLite's default: a net, for when the WalCheckpointer falls behind or fails.
COMMIT_CHECKPOINT_PAGES = 10_000

#: Pages of log past which a copy asked for `soon` ends on the writing thread, so that the
#: log starts over before a commit reaches the net.
RESTART_PAGES = COMMIT_CHECKPOINT_PAGES // 2

#: How often a store's WalCheckpointer copies the write-ahead log into the database file.
WAL_CHECKPOINT_SECONDS = 1.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a flow writes; the busy timeout queues writers
    # instead of failing them when several requests finish at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on the disk before it returns, so what the hub has acknowledged
    # survives a power loss too, not only the hub's own crash (NORMAL's promise in WAL mode).
    cursor.execute("PRAGMA synchronous=FULL")
    # The WalCheckpointer's thread checkpoints; a commit does only when far more has piled
    # up than it lets, as a net.
    cursor.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
    cursor.close()


#: The pragma a side connection's transaction commits under, by whether it must be durable.
#: In WAL mode NORMAL leaves out the sync of the log at commit, and only that: the log is
#: synced before each checkpoint copies it, a lost commit is lost whole (the log's frames
#: are checksummed in a chain, read back up to the first that fails), and the next FULL
#: commit's sync of the log, one file written in order, makes every commit before it
#: durable too (sqlite.org: wal.html, "Performance Considerations"; pragma.html,
#: synchronous).
_SYNCHRONOUS = {True: "PRAGMA synchronous=FULL", False: "PRAGMA synchronous=NORMAL"}
#: By whether a side connection's transaction has SQLite check its foreign keys. Unchecked,
#: a deleted instance costs 8 lookups fewer, one per table naming instances (a sixth of the
#: purge's statements' time on 1,000,000 instances).
_FOREIGN_KEYS = {True: "PRAGMA foreign_keys=ON", False: "PRAGMA foreign_keys=OFF"}


#: SQLite's words for a database that cannot take writes now but may later; its other
#: OperationalErrors ("no such table", a syntax error) are the hub's own faults.
_SQLITE_OUTAGES = (
    "database or disk is full",
    "attempt to write a readonly database",
    "database is locked",
    "disk i/o error",
    "unable to open database file",
)

#: PostgreSQL's SQLSTATEs of a database that refuses writes for now: read-only
#: transaction, disk full, out of memory, too many connections, shut down, cannot connect.
_POSTGRES_OUTAGE_STATES = ("25006", "53", "57P", "08")


def _refusal(context: ExceptionContext) -> DatabaseUnavailable | None:
    if context.dialect is None or context.is_pre_ping:
        # The pool's check of a connection it hands out: a dead one is replaced, not news.
        return None
    return _refusal_of(context.original_exception, context.dialect.name, context.is_disconnect)


def _refusal_of(
    error: BaseException, database: str, disconnected: bool
) -> DatabaseUnavailable | None:
    if database == "sqlite":
        text = str(error).lower()
        if type(error).__name__ == "OperationalError" and any(
            words in text for words in _SQLITE_OUTAGES
        ):
            return DatabaseUnavailable(f"the database refuses writes: {text}")
        return None
    state = getattr(error, "sqlstate", None) or ""
    if disconnected or state.startswith(_POSTGRES_OUTAGE_STATES):
        reason = getattr(getattr(error, "diag", None), "message_primary", None)
        return DatabaseUnavailable(
            f"the database refuses writes: {reason or type(error).__name__} (SQLSTATE {state})"
            if state
            else f"the database cannot be reached: {type(error).__name__}"
        )
    return None


def _raise_outage(context: ExceptionContext) -> None:
    """Turns a database's refusal into DatabaseUnavailable, so that every caller above the
    store tells an outage from a fault without knowing either database's errors. The
    message holds the database's words, never the URL or its password."""
    refusal = _refusal(context)
    if refusal is not None:
        raise refusal from context.original_exception


def _watch_for_outages(engine: Engine) -> None:
    event.listen(engine, "handle_error", _raise_outage)


def open_engine(url: str) -> AsyncEngine:
    parsed = _with_driver(url, _ASYNC_DRIVERS)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)
    _watch_for_outages(engine.sync_engine)
    return engine


class ClosedForWrites(Exception):
    """A side connection's thread has ended: closed, or the interpreter is stopping."""


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
        _watch_for_outages(self._engine)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-side")
        #: Opened on the thread by the first piece of work.
        self._connection: Connection | None = None
        self._closed = False

    async def run(
        self, work: Callable[[Connection], _T], *, durable: bool = True, keys_checked: bool = True
    ) -> _T:
        """`work` in a transaction of its own, on the connection's thread, which holds the
        file's write lock from its first statement (`BEGIN IMMEDIATE`): what it reads, no
        other process changes before it commits. (pysqlite would begin it at the first
        write, its reads before that each a snapshot of its own.) Not `durable`: committed
        without waiting for the disk (SQLite's `synchronous=NORMAL`), for work that is done
        again when lost. Not `keys_checked`: SQLite leaves the foreign keys unchecked, for
        work that checks what names the rows it deletes and deletes those that name them
        itself (the purge)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._in_transaction, work, durable, keys_checked
        )

    def _in_transaction(
        self, work: Callable[[Connection], _T], durable: bool, keys_checked: bool
    ) -> _T:
        if self._connection is None:
            self._connection = self._engine.connect()
        with self._connection.begin():
            # Set for every transaction, however the one before ended, before it begins
            # (SQLite refuses to change the one inside a transaction and ignores the other;
            # pysqlite begins one at the first write).
            self._connection.exec_driver_sql(_SYNCHRONOUS[durable])
            self._connection.exec_driver_sql(_FOREIGN_KEYS[keys_checked])
            self._connection.exec_driver_sql("BEGIN IMMEDIATE")
            return work(self._connection)

    def between_writes(self, step: Callable[[], _T]) -> _T:
        """`step`'s result, run on the connection's thread between two of its transactions
        (called from another thread, which waits for it); ClosedForWrites once the
        connection is closed or the interpreter is stopping."""
        try:
            done = self._thread.submit(step)
        except RuntimeError as refused:
            raise ClosedForWrites from refused
        return done.result()

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


class WalCheckpointer:
    """Copies a SQLite file's write-ahead log into the database every `seconds`, on a thread
    and a connection of its own, so that no commit does it: by SQLite's default the commit
    that took the log past 1,000 pages copied them and synced the file before it returned,
    and its flows waited, the slowest of a loaded hub's. Passive: it waits for no reader or
    writer, and what they still use is copied next time.

    A log is started over (written again from its first page) only by a commit that finds
    it wholly copied, and under a steady load some flow always commits while a copy runs:
    the log then grew round after round until a commit copied it at the net's 10,000 pages,
    syncing the log and the file, every second or so at 300 requests a second, and the
    flows behind it waited 10 to 20 ms. So each round copies twice while the flows go on
    committing, then the few pages they added meanwhile by `between_writes` (the store's
    writing thread, between two of its transactions), and the log is whole in the file:
    the next commit starts it over. `close` it when the store closes, before the store's
    writing thread.

    It holds the writing connection weakly: a store dropped unclosed lets its writing thread
    end as a ThreadPoolExecutor's does when collected, and the rounds then copy beside the
    commits only, as SQLite's other processes' commits are."""

    def __init__(
        self,
        path: str,
        seconds: float = WAL_CHECKPOINT_SECONDS,
        writing: SqliteSideConnection | None = None,
    ) -> None:
        self._path = path
        self._seconds = seconds
        self._writing = None if writing is None else weakref.ref(writing)
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def soon(self) -> None:
        """Copy the log now, beside the writes, without waiting for the round: for a writer
        that fills it faster than the rounds copy it (the purge), whose commits would else
        take it past the net and copy it themselves, 80 to 100 ms while the writes behind
        them wait. Past RESTART_PAGES the copy ends as a round does, on the writing thread,
        so that the next commit starts the log over: under the purge's writes the log is
        never copied to its end otherwise."""
        self._woken.set()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        due = time.monotonic() + self._seconds
        try:
            while True:
                woken = self._woken.wait(max(0.0, due - time.monotonic()))
                self._woken.clear()
                if self._stopping.is_set():
                    return
                try:
                    # Opened at the first round: a store closed before it opens none. Used by
                    # the writing thread too, never at the same time as by this one.
                    connection = connection or sqlite3.connect(
                        self._path, timeout=30, check_same_thread=False
                    )
                    if woken and _copy(connection) >= RESTART_PAGES:
                        self._copy_between_writes(connection)
                    if time.monotonic() >= due:
                        due = time.monotonic() + self._seconds
                        self._round(connection)
                except sqlite3.Error as error:
                    # A full disk or a file gone: the commits' own checkpoints are the net.
                    log.warning("WAL checkpoint failed: %s", error)
        finally:
            if connection is not None:
                connection.close()

    def _round(self, connection: sqlite3.Connection) -> None:
        _copy(connection)
        _copy(connection)
        self._copy_between_writes(connection)

    def _copy_between_writes(self, connection: sqlite3.Connection) -> None:
        writing = None if self._writing is None else self._writing()
        if writing is not None:
            with contextlib.suppress(ClosedForWrites):
                writing.between_writes(lambda: _copy(connection))

    async def close(self) -> None:
        self._stopping.set()
        self._woken.set()
        await asyncio.to_thread(self._thread.join)


def _copy(connection: sqlite3.Connection) -> int:
    """The log's pages copied into the database file, those that no reader or writer uses;
    the pages the log holds."""
    _, pages, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(pages)


def _sqlite_file(engine: AsyncEngine) -> str | None:
    """The path of `engine`'s SQLite file; None for PostgreSQL or a database in memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def wal_checkpointer(
    engine: AsyncEngine, writing: SqliteSideConnection | None
) -> WalCheckpointer | None:
    """A checkpointer of `engine`'s SQLite file, which finishes each round between two of
    `writing`'s transactions; None for PostgreSQL or a database in memory."""
    path = _sqlite_file(engine)
    if path is None:
        return None
    return WalCheckpointer(path, writing=writing)


def sqlite_side_connection(engine: AsyncEngine) -> SqliteSideConnection | None:
    """A side connection to `engine`'s SQLite file; None for PostgreSQL or a database in
    memory."""
    return None if _sqlite_file(engine) is None else SqliteSideConnection(engine.url)


#: PostgreSQL statements and their parameters (store/instance_writes.py's `Statement`): one
#: execution's, or a list of one per execution.
PipelinedStatement = tuple[str, Sequence[Any] | Mapping[str, Any] | list[Any]]


class KeptConnection:
    """A psycopg connection to an async engine's PostgreSQL, kept open for transactions that
    come one at a time (the group commit's) and run by psycopg itself: taking a connection
    from the pool for each cost its checkout and its pre-ping, a round trip, and running the
    statements through SQLAlchemy (its execution context per statement, `run_sync`'s
    greenlet, its transaction's bookkeeping) cost more of the event loop's CPU than psycopg
    did sending them. It connects as the engine does (its dialect's arguments and psycopg
    adapters), in autocommit mode; a transaction that fails ends the connection, and the next
    opens another. `close` it when the hub stops.

    The connection stays in psycopg's pipeline mode, and a transaction is its statements
    and one Sync: sent together and answered together, one round trip. With no BEGIN of
    their own they are one implicit transaction, which the server commits at the Sync
    before it answers it, or rolls back whole at the first statement that fails (its error
    raised by the Sync). Begun by psycopg outside autocommit, the BEGIN and the COMMIT each
    waited for a Sync of their own, and leaving the pipeline for a third: three round trips;
    entering and leaving the pipeline for each transaction cost a third of psycopg's CPU
    for it. Errors are raised as the engine raises them: a refusal as DatabaseUnavailable,
    any other as SQLAlchemy's DBAPIError of its kind (IntegrityError, DataError...)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._dialect = engine.dialect
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._open: _Pipelined | None = None

    async def run(self, statements: Sequence[PipelinedStatement]) -> None:
        """`statements` in a transaction of their own, committed when this returns; one at a
        time."""
        try:
            if self._open is None:
                self._open = await _Pipelined.opened(self._connect_args)
            cursor = self._open.connection.cursor()
            for sql, parameters in statements:
                if isinstance(parameters, list):
                    await cursor.executemany(sql, parameters)
                else:
                    await cursor.execute(sql, parameters)
            await self._open.pipeline.sync()
        except BaseException as failed:
            # Failed or stopped midway: what is left of the pipeline in the driver is
            # unknown, so the connection goes, and the transaction with it.
            gone, self._open = self._open, None
            # As the engine tells them: a connection that could not be opened is not one
            # that was lost.
            disconnected = gone is not None and (gone.connection.broken or gone.connection.closed)
            if gone is not None:
                await gone.close()
            if isinstance(failed, psycopg.Error):
                raise _as_the_engine_raises(failed, self._dialect, disconnected) from failed
            raise

    async def close(self) -> None:
        gone, self._open = self._open, None
        if gone is not None:
            await gone.close()


@dataclass(frozen=True)
class _Pipelined:
    """A connection in pipeline mode, until it is closed."""

    connection: psycopg.AsyncConnection[Any]
    entered: AbstractAsyncContextManager[psycopg.AsyncPipeline]
    pipeline: psycopg.AsyncPipeline

    @classmethod
    async def opened(cls, connect_args: tuple[Sequence[Any], Mapping[str, Any]]) -> _Pipelined:
        args, params = connect_args
        connection = await psycopg.AsyncConnection.connect(*args, **{**params, "autocommit": True})
        try:
            entered = connection.pipeline()
            return cls(connection, entered, await entered.__aenter__())
        except BaseException:
            await connection.close()
            raise

    async def close(self) -> None:
        """Closed without waiting on the server (between two transactions nothing is
        pending; a transaction given up is abandoned, rolled back by the server), then out
        of pipeline mode, which fails on the closed connection and only sets psycopg's
        objects straight."""
        with contextlib.suppress(Exception):
            await self.connection.close()
        with contextlib.suppress(Exception):
            await self.entered.__aexit__(None, None, None)


def _as_the_engine_raises(error: psycopg.Error, dialect: Dialect, disconnected: bool) -> Exception:
    """`error` as a statement run by the engine raises it: DatabaseUnavailable for a
    refusal (`_raise_outage`), else SQLAlchemy's exception of its kind, without the
    statement's parameters (the flows' payloads)."""
    refusal = _refusal_of(error, dialect.name, disconnected)
    if refusal is not None:
        return refusal
    return DBAPIError.instance(
        None,
        None,
        error,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=disconnected,
        dialect=dialect,
    )


def kept_connection(engine: AsyncEngine) -> KeptConnection | None:
    """A kept connection to `engine`'s PostgreSQL; None for SQLite, whose writes go by
    `sqlite_side_connection`'s thread."""
    if engine.url.get_backend_name() != "postgresql":
        return None
    return KeptConnection(engine)


def migrate(url: str) -> None:
    """Bring the schema to the newest migration (synchronous: run before serving)."""
    config = Config()
    config.set_main_option("script_location", "derms_bridge.store:migrations")
    engine = create_engine(_with_driver(url, _SYNC_DRIVERS))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    # No transaction around them: each migration runs in one of its own, and one that
    # builds an index CONCURRENTLY on PostgreSQL steps out of it (autocommit_block).
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()
