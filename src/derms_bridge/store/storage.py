"""How big the database is and what holds it: sizes, the largest tables, the oldest
instance, and on PostgreSQL the dead rows and the oldest open transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from derms_bridge.store.instances import as_utc
from derms_bridge.store.tables import InstanceRow

#: How many of the largest tables are measured and shown.
LARGEST_TABLES = 10


@dataclass(frozen=True)
class TableSize:
    name: str
    #: With its indexes (and, on PostgreSQL, its TOAST).
    bytes: int
    #: PostgreSQL's estimate, or SQLite's count of the table's cells.
    rows: int
    #: PostgreSQL: rows deleted or updated away that vacuum has not reclaimed yet.
    dead_rows: int | None


@dataclass(frozen=True)
class DatabaseSize:
    dialect: str
    bytes: int
    #: Largest first; empty on a SQLite built without its dbstat table.
    tables: list[TableSize]
    oldest_instance: datetime | None
    #: PostgreSQL: how long the oldest transaction open on this database has run (one
    #: held open stops vacuum and slows the SKIP LOCKED queues); None: none open.
    oldest_transaction_seconds: float | None
    #: PostgreSQL: whether the server runs autovacuum. Off, nothing reclaims what the purge
    #: deletes: the tables and their indexes only grow, and searches slow down. None: SQLite.
    autovacuum: bool | None


async def database_size(engine: AsyncEngine) -> DatabaseSize:
    async with engine.connect() as connection:
        oldest = await connection.scalar(select(func.min(InstanceRow.received_at)))
        oldest_instance = as_utc(oldest) if oldest is not None else None
        if engine.dialect.name == "postgresql":
            return await _postgres(connection, oldest_instance)
        return await _sqlite(connection, oldest_instance)


async def _postgres(connection: AsyncConnection, oldest_instance: datetime | None) -> DatabaseSize:
    size = await connection.scalar(text("SELECT pg_database_size(current_database())"))
    tables = (
        await connection.execute(
            text(
                "SELECT relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup "
                "FROM pg_stat_user_tables ORDER BY 2 DESC, relname LIMIT :largest"
            ),
            {"largest": LARGEST_TABLES},
        )
    ).all()
    oldest_transaction = await connection.scalar(
        text(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(xact_start)) "
            "FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL"
        )
    )
    autovacuum = await connection.scalar(text("SELECT current_setting('autovacuum')"))
    return DatabaseSize(
        dialect="postgresql",
        bytes=int(size or 0),
        tables=[
            TableSize(name, int(size), int(rows), int(dead)) for name, size, rows, dead in tables
        ],
        oldest_instance=oldest_instance,
        oldest_transaction_seconds=(
            float(oldest_transaction) if oldest_transaction is not None else None
        ),
        autovacuum=autovacuum == "on",
    )


async def _sqlite(connection: AsyncConnection, oldest_instance: datetime | None) -> DatabaseSize:
    pages = await connection.scalar(text("PRAGMA page_count"))
    page_size = await connection.scalar(text("PRAGMA page_size"))
    try:
        # dbstat reads every page once: the caller keeps its answer a while.
        tables = (
            await connection.execute(
                text(
                    "SELECT m.tbl_name, SUM(d.pgsize), "
                    "SUM(CASE WHEN d.name = m.tbl_name AND d.pagetype = 'leaf' "
                    "THEN d.ncell ELSE 0 END) "
                    "FROM dbstat AS d JOIN sqlite_master AS m ON m.name = d.name "
                    "WHERE m.tbl_name NOT LIKE 'sqlite_%' "
                    "GROUP BY m.tbl_name ORDER BY 2 DESC, 1 LIMIT :largest"
                ),
                {"largest": LARGEST_TABLES},
            )
        ).all()
    except OperationalError:
        tables = []
    return DatabaseSize(
        dialect="sqlite",
        bytes=int(pages or 0) * int(page_size or 0),
        tables=[TableSize(name, int(size), int(rows), None) for name, size, rows in tables],
        oldest_instance=oldest_instance,
        oldest_transaction_seconds=None,
        autovacuum=None,
    )


@dataclass(frozen=True)
class StorageReport:
    """What the console and /metrics show of the storage, as measured at `measured_at`."""

    size: DatabaseSize
    #: What the purge would remove now: payloads, instances, file rows (of payloads purged).
    purge_waiting: dict[str, int]
    measured_at: datetime
