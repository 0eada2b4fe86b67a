"""On SQLite the store's own thread copies the write-ahead log into the database file, so
that no flow's commit waits for that copy and its sync: what a flow wrote reaches the file
within seconds though far fewer pages were written than a commit would checkpoint at."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from derms_bridge.store.database import (
    COMMIT_CHECKPOINT_PAGES,
    SqliteSideConnection,
    WalCheckpointer,
    open_engine,
)
from tests.conftest import CPMCS_AUTH, HubUnderTest
from tests.payloads import customer_unavailability_message

#: Long enough for a loaded machine; the checkpointer's rounds are a second apart.
DEADLINE_SECONDS = 30.0

#: Commits of a row of 4,000 bytes each, one after the other: more log than the net's
#: 10,000 pages (40 MB), at which a commit copies it itself and starts it over.
COMMITS = 7000
NET_BYTES = COMMIT_CHECKPOINT_PAGES * 4096


def in_the_database_file(path: str, instance_ids: list[str]) -> set[str]:
    """Those of the instances the database file itself holds, its write-ahead log unread."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as reading:
        marks = ",".join("?" * len(instance_ids))
        rows = reading.execute(f"SELECT id FROM instances WHERE id IN ({marks})", instance_ids)
        return {instance_id for (instance_id,) in rows}


async def test_what_flows_wrote_is_checkpointed_by_the_store_not_left_in_the_log(
    hub: HubUnderTest,
) -> None:
    url = make_url(hub.settings.database.url.get_secret_value())
    if url.get_backend_name() != "sqlite":
        pytest.skip("a write-ahead log checkpointed by the hub is SQLite's; PostgreSQL has its own")
    made = []
    for n in range(3):
        reply = await hub.client.post(
            "/cpmcs/outbound/X1-CUSTUNAVL",
            json=customer_unavailability_message(f"CKPT-{n}"),
            auth=CPMCS_AUTH,
        )
        made.append(reply.headers["X-Instance-Id"])

    deadline = time.monotonic() + DEADLINE_SECONDS
    found: set[str] = set()
    while found != set(made) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        try:
            found = in_the_database_file(str(url.database), made)
        except sqlite3.DatabaseError:
            # Read while a checkpoint writes the file: the next look sees it whole.
            continue

    assert found == set(made)


async def test_a_log_written_without_pause_is_still_started_over(tmp_path: Path) -> None:
    """Flows that commit one after the other without a pause never let a copy made beside
    them finish: each round ends between two of their commits, so the log is copied whole
    and the next commit writes it again from its start: the -wal file stays the size of a
    round's commits, far below the net's."""
    path = tmp_path / "hub.db"
    engine = open_engine(f"sqlite+aiosqlite:///{path}")
    writing = SqliteSideConnection(engine.url)
    checkpointer = WalCheckpointer(str(path), seconds=0.02, writing=writing)
    row = "x" * 4000
    try:
        await writing.run(lambda c: c.exec_driver_sql("CREATE TABLE written (body TEXT)"))
        for _ in range(COMMITS):
            await writing.run(lambda c: c.exec_driver_sql("INSERT INTO written VALUES (?)", (row,)))
        log_bytes = (tmp_path / "hub.db-wal").stat().st_size
    finally:
        await checkpointer.close()
        await writing.close()
        await engine.dispose()

    assert log_bytes < NET_BYTES * 3 / 4


def writing_threads() -> int:
    return sum(thread.name.startswith("sqlite-side") for thread in threading.enumerate())


async def test_a_store_dropped_unclosed_lets_its_writing_thread_end(tmp_path: Path) -> None:
    """The checkpointer holds the writing connection weakly: a store that was never closed
    leaves no thread behind for ever once nothing else holds it."""
    path = tmp_path / "hub.db"
    before = writing_threads()
    writing: SqliteSideConnection | None = SqliteSideConnection(make_url(f"sqlite:///{path}"))
    assert writing is not None
    checkpointer = WalCheckpointer(str(path), seconds=0.02, writing=writing)
    try:
        await writing.run(lambda c: c.exec_driver_sql("CREATE TABLE written (body TEXT)"))
        assert writing_threads() == before + 1
        await asyncio.sleep(0.1)

        writing = None
        deadline = time.monotonic() + DEADLINE_SECONDS
        while writing_threads() > before and time.monotonic() < deadline:
            gc.collect()
            await asyncio.sleep(0.05)

        assert writing_threads() == before
    finally:
        await checkpointer.close()
