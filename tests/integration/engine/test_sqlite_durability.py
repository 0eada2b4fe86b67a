"""On SQLite every connection the hub writes by syncs its commit to the disk before the
commit returns (`synchronous=FULL`): what the hub acknowledged survives a power loss, not
only a crash of the hub's process, which is all that SQLite's NORMAL keeps in WAL mode."""

from __future__ import annotations

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
