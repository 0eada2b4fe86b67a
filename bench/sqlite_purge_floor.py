"""Benchmark: the least a purge of the oldest day can cost on SQLite, beside the hub's own
purge of the same day (issue 14's purge target, >= 20,000 instances per second).

Given a SQLite file that `store_scale.py --backend sqlite --keep` filled, each measure
runs on a fresh copy of it (made beside it, synced before the clock starts, removed after):

* `one transaction`: every row of the oldest day's instances deleted in one transaction,
  unsynced, its foreign keys unchecked, nothing checked first; `one transaction, log
  copied` adds the checkpoint's copy of the log into the file, which must come some time.
* `slices of N`: the same in batches of 1,000 found by the index of received_at, each
  deleted in transactions of N instances, the log copied beside them by a thread of its
  own every 50 ms (as the hub's checkpointer does under the purge; left to the commits,
  past 10,000 pages, each such commit copies it itself).
* `the hub's purge`: the hub's own (`Purge`, as the built-in schedule runs it, on the
  store's writing thread, in slices of about `retention.SLICE_SECONDS`), no trigger load.

Neither of the first two keeps what the hub must: nothing checks whether a kept instance
or a running file names an instance, and no other write waits for less than a whole
transaction. They are the floor the machine and SQLite set, whatever the code above.

    .venv/bin/python bench/store_scale.py --backend sqlite --keep --no-purge --samples 1
    .venv/bin/python bench/sqlite_purge_floor.py /tmp/store_scale-XXXX/hub.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import harness
from derms_bridge.store.database import COMMIT_CHECKPOINT_PAGES, open_engine
from derms_bridge.store.instances import InstanceStore
from store_scale import oldest_day_purge, received_span

TARGET_PER_SECOND = 20_000
#: Every table whose rows name an instance by `instance_id`, deleted before the instances.
NAMING_TABLES = (
    "business_keys",
    "activities",
    "error_notices",
    "segments",
    "file_jobs",
    "staged_file_chunks",
    "staged_files",
    "schedule_ticks",
)
#: How often the copying thread copies the log into the file while slices are deleted.
COPY_EVERY_SECONDS = 0.05
SEARCHED_AT_ONCE = 1_000


@dataclass(frozen=True)
class Measure:
    name: str
    instances: int
    seconds: float
    #: What the measure's time leaves out, said in its line of the report.
    apart: str = ""

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds


@contextmanager
def fresh_copy(source: Path) -> Iterator[Path]:
    """A copy of `source` beside it, on the disk before it is used, removed after."""
    copy = source.with_name(f"{source.stem}-floor{source.suffix}")
    shutil.copyfile(source, copy)
    with copy.open("rb+") as written:
        os.fsync(written.fileno())
    try:
        yield copy
    finally:
        for suffix in ("", "-wal", "-shm"):
            copy.with_name(copy.name + suffix).unlink(missing_ok=True)


def _connected(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=WAL",
        "foreign_keys=OFF",
        "synchronous=NORMAL",
        # The hub's net: a commit copies the log itself only past it (SQLite's own is 1,000).
        f"wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}",
    ):
        connection.execute(f"PRAGMA {pragma}")
    return connection


def _day_ends(connection: sqlite3.Connection) -> str:
    """The end of the oldest day, as the instances' times are written."""
    ends: str = connection.execute(
        "SELECT datetime(min(received_at), '+1 day') FROM instances"
    ).fetchone()[0]
    return ends


_DELETES = [
    f"DELETE FROM {table} WHERE instance_id IN (SELECT value FROM json_each(?))"  # noqa: S608
    for table in NAMING_TABLES
] + ["DELETE FROM instances WHERE id IN (SELECT value FROM json_each(?))"]


def _delete(connection: sqlite3.Connection, ids: Sequence[str]) -> None:
    bound = (json.dumps(list(ids)),)
    connection.execute("BEGIN IMMEDIATE")
    for statement in _DELETES:
        connection.execute(statement, bound)
    connection.execute("COMMIT")


def one_transaction(path: Path) -> list[Measure]:
    connection = _connected(path)
    connection.execute("PRAGMA wal_autocheckpoint=0")
    ends = _day_ends(connection)
    started = time.perf_counter()
    ids = [
        row[0]
        for row in connection.execute("SELECT id FROM instances WHERE received_at < ?", (ends,))
    ]
    _delete(connection, ids)
    deleted = time.perf_counter() - started
    started = time.perf_counter()
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    copied = time.perf_counter() - started
    connection.close()
    return [
        Measure("one transaction", len(ids), deleted, "its log not yet copied"),
        Measure("one transaction, log copied", len(ids), deleted + copied),
    ]


def in_slices(path: Path, size: int) -> list[Measure]:
    connection = _connected(path)
    ends = _day_ends(connection)
    stop = threading.Event()

    def copy_the_log() -> None:
        copying = sqlite3.connect(path, isolation_level=None)
        while not stop.wait(COPY_EVERY_SECONDS):
            copying.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        copying.close()

    copier = threading.Thread(target=copy_the_log, name="copy-the-log")
    copier.start()
    started = time.perf_counter()
    gone = 0
    last = ("", "")
    while found := connection.execute(
        "SELECT id, received_at FROM instances WHERE received_at < ? "
        "AND (received_at, id) > (?, ?) ORDER BY received_at, id LIMIT ?",
        (ends, *last, SEARCHED_AT_ONCE),
    ).fetchall():
        last = (found[-1][1], found[-1][0])
        ids = [row[0] for row in found]
        for first in range(0, len(ids), size):
            _delete(connection, ids[first : first + size])
        gone += len(ids)
    took = time.perf_counter() - started
    stop.set()
    copier.join()
    connection.close()
    return [Measure(f"slices of {size:,}", gone, took, "log copied beside")]


async def _hub_purging(path: Path) -> Measure:
    instances = InstanceStore(open_engine(f"sqlite:///{path}"))
    try:
        first, _ = await received_span(instances)
        purge = oldest_day_purge(instances, (datetime.now(UTC) - first) / timedelta(days=1))
        started = time.perf_counter()
        report = await purge.run()
        took = time.perf_counter() - started
    finally:
        await instances.aclose()
    gone = report.removed.get("instances", 0)
    if not gone:
        raise harness.BenchmarkFailure("the hub's purge removed no instance")
    return Measure("the hub's purge", gone, took)


def hub_purge(path: Path) -> list[Measure]:
    return [asyncio.run(_hub_purging(path))]


def measure(source: Path, sizes: Sequence[int]) -> list[Measure]:
    if not source.is_file():
        raise harness.BenchmarkFailure(f"{source} is no file: fill one with store_scale.py --keep")
    runs: list[Callable[[Path], list[Measure]]] = [
        one_transaction,
        *[partial(in_slices, size=size) for size in sizes],
        hub_purge,
    ]
    found: list[Measure] = []
    for run in runs:
        with fresh_copy(source) as copy:
            found.extend(run(copy))
    return found


def report(measures: list[Measure]) -> str:
    rows = [("the oldest day", f"{measures[0].instances:,} instances")]
    for each in measures:
        verdict = harness.verdict(each.per_second >= TARGET_PER_SECOND)
        apart = f" ({each.apart})" if each.apart else ""
        rows.append(
            (each.name, f"{each.seconds:.3f} s, {each.per_second:,.0f}/s  {verdict}{apart}")
        )
    return harness.table(rows) + f"\n(target >= {TARGET_PER_SECOND:,} instances per second)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", type=Path, help="a SQLite file store_scale.py kept")
    parser.add_argument(
        "--slices",
        type=harness.positive,
        nargs="+",
        default=[80, 1000],
        help="instances a transaction (80: about the hub's 3 ms slice)",
    )
    options = parser.parse_args(argv)
    return harness.report_or_fail(
        "sqlite_purge_floor.py",
        lambda: measure(options.database, options.slices),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
