"""Benchmark: the intake of an Event Device Outcome file (flow 8), in process, the flow as it
is beside the same flow with its plain way taken off (every row read by the csv module and
checked by `fit_row`), and beside a reservation file (flow 7) of as many rows.

Each arm is the hub's own intake (`FileIntake.receive`, what the trigger's 202 waits on: every
row checked, the segments compressed and kept in one transaction) on a SQLite file in a
temporary directory, migrated first; then the bodies of its kept segments built as a worker
builds them before sending (`segment_body` over the decompressed rows). The arms alternate,
`--repeats` times, each with a messageId of its own; the medians are printed. The files are
written by `tests/csv_files.py` (imported with the repository's root on `sys.path`): outcomes
in turn, errorMessage on ERROR rows only, the rows split among `--events` events.

The outcome bodies of both ways must be the same bytes, and every file must be taken whole;
the exit code is 1 only when one is not. Nothing is asserted on time.

Run it from the repository root:

    .venv/bin/python bench/device_outcome.py [--rows N] [--events E] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from derms_bridge.engine.file_jobs.csv_cutter import segment_body
from derms_bridge.engine.file_jobs.intake import FileIntake
from derms_bridge.flows import event_device_outcome, event_device_reservation
from derms_bridge.flows.ports import FileFlow
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.settings import Segments
from derms_bridge.store.database import migrate, open_engine
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.tables import SegmentRow
from device_reservation import reservation
from harness import BenchmarkFailure
from processes import LOOKUPS_DIR

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # tests/csv_files.py writes the files: the same rows the tests use, in constant memory.
    sys.path.insert(0, str(REPO))

from tests.csv_files import write_outcome_csv, write_reservation_csv  # noqa: E402

#: The flow as it is, and the same flow with every row left to the csv module.
OUTCOME = event_device_outcome.FLOW
OUTCOME_BY_CSV = dataclasses.replace(OUTCOME, plain_row_pattern=None, plain_segment_request=None)
RESERVATION = event_device_reservation.FLOW


@dataclass(frozen=True)
class Arm:
    name: str
    flow: FileFlow[Any]
    csv_file: Path
    message: Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Run:
    intake_seconds: float
    body_seconds: float
    #: The bodies' digest: every run's bodies, kept, would take hundreds of MB.
    bodies_sha256: bytes


def outcome_message(message_id: str) -> dict[str, Any]:
    return {"drmsInstanceId": "DRMS-BENCH", "messageId": message_id, "fileName": "o.csv"}


async def run_arm(
    intake: FileIntake,
    instances: InstanceStore,
    lookups: Lookups,
    arm: Arm,
    message_id: str,
    rows: int,
) -> Run:
    message = arm.flow.message_model.model_validate(arm.message(message_id))
    with arm.csv_file.open("rb") as upload:
        started = time.perf_counter()
        received = await intake.receive(arm.flow, message.model_dump_json(), upload, caller=None)
        intake_seconds = time.perf_counter() - started
    async with instances.engine.connect() as connection:
        kept = (
            await connection.execute(
                select(SegmentRow.rows_zlib, SegmentRow.row_count)
                .where(SegmentRow.instance_id == received.instance_id)
                .order_by(SegmentRow.seq)
            )
        ).all()
    if sum(count for _rows, count in kept) != rows:
        raise BenchmarkFailure(f"{arm.name}: kept {sum(c for _r, c in kept):,} rows of {rows:,}")
    started = time.perf_counter()
    bodies = [
        segment_body(arm.flow, message, zlib.decompress(rows_zlib), lookups)
        for rows_zlib, _count in kept
    ]
    body_seconds = time.perf_counter() - started
    return Run(intake_seconds, body_seconds, hashlib.sha256(b"".join(bodies)).digest())


async def bench(rows: int, events: int, repeats: int, folder: Path) -> None:
    event_ids = [f"EV-{n}" for n in range(1, events + 1)]
    outcomes = write_outcome_csv(folder / "outcomes.csv", rows, event_ids=event_ids)
    reservations = write_reservation_csv(folder / "reservations.csv", rows)
    arms = [
        Arm("outcome", OUTCOME, outcomes, outcome_message),
        Arm("outcome, csv module only", OUTCOME_BY_CSV, outcomes, outcome_message),
        Arm("reservation", RESERVATION, reservations, reservation),
    ]
    url = f"sqlite:///{folder / 'hub.db'}"
    migrate(url)
    instances = InstanceStore(open_engine(url))
    files = FileJobStore(instances)
    lookups = load_lookups(LOOKUPS_DIR)
    intake = FileIntake(
        instances, files, lambda: lookups, Segments(), lambda: None, derms_connections={}
    )
    runs: dict[str, list[Run]] = {arm.name: [] for arm in arms}
    try:
        for repeat in range(repeats):
            for arm in arms:
                message_id = f"BENCH-{arm.name}-{repeat}"
                runs[arm.name].append(
                    await run_arm(intake, instances, lookups, arm, message_id, rows)
                )
    finally:
        await instances.aclose()
    if len({run.bodies_sha256 for run in runs["outcome"] + runs["outcome, csv module only"]}) > 1:
        raise BenchmarkFailure("the outcome bodies of the two ways differ")

    def median(arm: str, seconds: Callable[[Run], float]) -> float:
        return statistics.median(map(seconds, runs[arm]))

    size_mb = outcomes.stat().st_size / 1e6
    print(f"{'outcome file':<34}{rows:,} rows, {size_mb:.1f} MB, {events} events")
    print(f"{'reservation file':<34}{rows:,} rows, {reservations.stat().st_size / 1e6:.1f} MB")
    print(f"{'segments':<34}1,000 rows, kept in SQLite")
    print(f"{'runs':<34}{repeats} of each arm, alternated; medians")
    for what, seconds in (
        ("intake", lambda run: run.intake_seconds),
        ("bodies", lambda run: run.body_seconds),
    ):
        print()
        for arm in arms:
            print(f"{what + ', ' + arm.name:<34}{median(arm.name, seconds):.3f} s")
        plain, by_csv = median("outcome", seconds), median("outcome, csv module only", seconds)
        print(f"{'ratio (csv module only/outcome)':<34}{by_csv / plain:.2f}")
        print(f"{'ratio (outcome/reservation)':<34}{plain / median('reservation', seconds):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outcome-bench-") as folder:
        try:
            asyncio.run(bench(args.rows, args.events, args.repeats, Path(folder)))
        except BenchmarkFailure as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
