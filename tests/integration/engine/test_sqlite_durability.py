"""On SQLite every connection the hub writes by syncs its commit to the disk before the
commit returns (`synchronous=FULL`): what the hub acknowledged survives a power loss, not
only a crash of the hub's process, which is all that SQLite's NORMAL keeps in WAL mode."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from derms_bridge.store.database import SqliteSideConnection, migrate, open_engine

FULL = 2


def synchronous(connection: Connection) -> int:
    level: int = connection.execute(text("PRAGMA synchronous")).scalar_one()
    return level


async def test_each_connection_the_hub_writes_by_syncs_every_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)

    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(synchronous) == FULL
    finally:
        await engine.dispose()

    side = SqliteSideConnection(make_url(url))
    try:
        assert await side.run(synchronous) == FULL
    finally:
        await side.close()


async def test_a_side_transaction_reads_under_the_write_lock_it_writes_under(
    tmp_path: Path,
) -> None:
    """Another process's write that is under way when a transaction of the writing thread
    begins is waited for, and what the transaction reads is that write's result: a check
    and the write it decides stand on one snapshot, whatever the other processes sharing
    the file do."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    other = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    other.execute("INSERT INTO schedules (flow, ticks_through) VALUES ('purge', '2026-01-01')")
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE schedules SET ticks_through = '2026-06-01' WHERE flow = 'purge'")

    def read_then_write(connection: Connection) -> str:
        seen: str = connection.execute(
            text("SELECT ticks_through FROM schedules WHERE flow = 'purge'")
        ).scalar_one()
        connection.execute(text("UPDATE schedules SET lease_owner = 'x' WHERE flow = 'purge'"))
        return seen

    side = SqliteSideConnection(make_url(url))
    try:
        reading = asyncio.create_task(side.run(read_then_write))
        await asyncio.sleep(0.3)
        assert not reading.done()
        other.execute("COMMIT")
        assert (await asyncio.wait_for(reading, 10)).startswith("2026-06-01")
    finally:
        other.close()
        await side.close()
