"""What an instance's trace id costs its insert in SQLite's index (instances.trace_id): a
table shaped as instances' trace columns, indexed as migration 0017 indexes them, written
in commits of `--per-commit` rows (as the group commit writes them), with no trace id,
with random ids (the W3C way, what the hub made before wave6-trace), and with ids that
begin with the time in milliseconds (tracing_export.py's `_trace_id`), `--per-ms` of them
in each millisecond. CPU per row, in this process (SQLite's work included).

    .venv/bin/python bench/trace_id_index.py [--rows N] [--per-commit N] [--per-ms N]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from harness import positive, table

#: 2025-12-04T18:00:00Z in milliseconds: where the time-ordered ids begin.
FIRST_MS = 1_764_871_200_000
#: About what an instance's row holds besides its trace (its payload's size in the bench).
PAYLOAD = "x" * 300


def no_trace(row: int, per_ms: int) -> str | None:
    return None


def random_trace(row: int, per_ms: int) -> str | None:
    return f"{random.getrandbits(128):032x}"


def timed_trace(row: int, per_ms: int) -> str | None:
    return f"{(FIRST_MS + row // per_ms) << 80 | random.getrandbits(80):032x}"


KINDS: dict[str, Callable[[int, int], str | None]] = {
    "no trace id": no_trace,
    "random ids": random_trace,
    "time first": timed_trace,
}


def microseconds_per_row(
    trace_id: Callable[[int, int], str | None], rows: int, per_commit: int, per_ms: int
) -> float:
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(Path(directory) / "index.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE instances (id VARCHAR(36) PRIMARY KEY, payload TEXT,"
            " trace_id VARCHAR(32), trace_span_id VARCHAR(16))"
        )
        db.execute("CREATE INDEX ix_instances_trace_id ON instances (trace_id)")
        started = time.process_time()
        for first in range(0, rows, per_commit):
            db.execute("BEGIN")
            for row in range(first, first + per_commit):
                found = trace_id(row, per_ms)
                db.execute(
                    "INSERT INTO instances VALUES (?, ?, ?, ?)",
                    (str(uuid.uuid4()), PAYLOAD, found, None if found is None else "0" * 16),
                )
            db.execute("COMMIT")
        spent = time.process_time() - started
        db.close()
    return spent / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a trace id's cost in instances' index")
    parser.add_argument("--rows", type=positive, default=40_000, help="rows per run (40000)")
    parser.add_argument("--per-commit", type=positive, default=16, help="rows a commit (16)")
    parser.add_argument("--per-ms", type=positive, default=1, help="time-first ids a ms (1)")
    parser.add_argument("--rounds", type=positive, default=3, help="runs of each kind (3)")
    args = parser.parse_args(argv)
    measured: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(args.rounds):
        for kind, trace_id in KINDS.items():
            measured[kind].append(
                microseconds_per_row(trace_id, args.rows, args.per_commit, args.per_ms)
            )
    rows = [("rows per run", f"{args.rows:,}, {args.per_commit} a commit")]
    rows += [
        (kind, " ".join(f"{cost:.1f}" for cost in costs) + " us of CPU per row")
        for kind, costs in measured.items()
    ]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
