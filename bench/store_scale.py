"""Benchmark: the store at the size a utility reaches after months (issue 14 points 4, 5).

Fills a database of its own with a realistic mix, then measures what an operator does with
it through the hub's own code paths (`Operations`, as the console's pages and the API's
routes call it; the purge; the `/metrics` exposition), and prints p50 / p95 against the
targets: every page and query at p95 <= 200 ms on PostgreSQL with 5,000,000 instances,
<= 300 ms on SQLite with 1,000,000; the purge of one day's worth at >= 20,000 instances per
second while a trigger load runs, the triggers' p99 raised by at most 20 ms.

The mix: `--days` (90, the default retention of succeeded instances) of instances received
evenly, flows in a utility's proportions (program event status updates most, then the
enrollment and device flows; reservation and outcome files a few hundred a day), 94 %
succeeded, the rest failed (a fifth of them resubmitted, failing again), resolved (each
with the resubmit that succeeded), rejected and skipped; the last minute's in progress.
Each is named by the UUIDv7 of the millisecond it was received, as the hub names them
(src/derms_bridge/ids.py); hubs before it named them by random UUIDv4s.
Each has its messageId and the identifier its flow carries (enrollmentId, deviceId,
programEventId, ... shared by the flows of one enrollment or event), its outbound calls
as activities, a file its job and its segments (rows of 1,000, zlib-compressed CSV). As
the default retention leaves it, the payloads of succeeded instances older than 7 days
are purged already (and their segments gone); failed and rejected ones keep theirs.

The fill migrates with the project's migrations, then bulk-inserts: COPY on PostgreSQL
(psycopg; the foreign keys' triggers left out for the session, the rows being whole by
construction, the dashboard's counts made once after), executemany in transactions of
50,000 instances on SQLite (its triggers keep the counts as the rows go in); then VACUUM
ANALYZE (ANALYZE on SQLite), as autovacuum would have long done on a database this old.
PostgreSQL: a database of its own (`--database`, dropped at the end unless `--keep`) on
127.0.0.1:5432; SQLite: a file in a temporary directory (removed unless `--keep`).

`--migrations` (PostgreSQL) times each migration's upgrade on the filled database
(issue 14 point 5): it goes down to 0006 and up again one revision at a time, then from
0001 to 0006 (which drops and creates the file tables empty), and up to the head.

Run it from the repository root, on a shared machine under `nice`:

    nice -n 10 .venv/bin/python bench/store_scale.py --backend postgresql  # 5,000,000
    nice -n 10 .venv/bin/python bench/store_scale.py --backend sqlite      # 1,000,000
    .venv/bin/python bench/store_scale.py --backend sqlite --instances 20000 --samples 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, select, text

import harness
from derms_bridge.console.charts import hourly_charts
from derms_bridge.engine.operations import Operations, flow_counts
from derms_bridge.engine.purge import Purge
from derms_bridge.engine.storage import StorageWatch
from derms_bridge.flows.registry import SCHEDULED_FLOWS
from derms_bridge.ids import RANDOM_BITS, new_instance_id, uuid7
from derms_bridge.metrics import exposition
from derms_bridge.schemas.ops import InstanceFilter, PageCursor
from derms_bridge.settings.retention import Keep, Retention, RetentionByOutcome
from derms_bridge.store.database import migrate, open_engine
from derms_bridge.store.instances import InstanceStore, as_utc
from derms_bridge.store.retention import RetentionStore
from derms_bridge.store.tables import InstanceRow

#: Of 10,000 instances, how many each flow receives: status updates of program events most,
#: the enrollment and device flows next; reservation and outcome files a few hundred a day.
FLOW_SHARES = {
    "program_event_status_update": 3300,
    "enrollment_request": 1200,
    "enrollment_sync": 1000,
    "enroll_headend_status_ack": 900,
    "device_status_check": 800,
    "device_status_check_ack": 800,
    "customer_event_opt_out": 600,
    "customer_unavailability": 350,
    "common_error_handler": 300,
    "program_rule_sync": 120,
    "program_rule_sync_ack": 120,
    "aggregator_sync": 60,
    "aggregator_sync_ack": 60,
    "event_device_reservation": 80,
    "event_device_outcome": 80,
    "sp_network_location_transfer": 10,
    "device_score_ftp": 5,
    "device_score_os": 5,
    "common_ftp_transfer": 55,
    "common_os_transfer": 55,
}
#: Of 10,000 instances, how they ended (a resolved one brings the resubmit that succeeded).
STATUS_SHARES = {
    "succeeded": 9400,
    "failed": 250,
    "resolved": 100,
    "rejected": 150,
    "skipped": 100,
}
#: The identifier each flow carries besides its messageId, and how many distinct values
#: it takes per 1,000 instances of the whole database (an enrollment's flows share one).
FLOW_KEYS = {
    "program_event_status_update": ("programEventId", 20),
    "enrollment_request": ("enrollmentId", 300),
    "enrollment_sync": ("enrollmentId", 300),
    "enroll_headend_status_ack": ("enrollmentId", 300),
    "device_status_check": ("deviceId", 150),
    "device_status_check_ack": ("deviceId", 150),
    "customer_event_opt_out": ("programEventId", 20),
    "customer_unavailability": ("accountId", 100),
    "common_error_handler": ("sourceInstanceId", 1000),
    "program_rule_sync": ("syncRequestId", 10),
    "program_rule_sync_ack": ("syncRequestId", 10),
    "aggregator_sync": ("syncRequestId", 10),
    "aggregator_sync_ack": ("syncRequestId", 10),
    "event_device_reservation": ("fileName", 1000),
    "event_device_outcome": ("fileName", 1000),
    "sp_network_location_transfer": ("fileName", 1000),
    "device_score_ftp": ("scheduleTick", 1000),
    "device_score_os": ("scheduleTick", 1000),
    "common_ftp_transfer": ("fileName", 1000),
    "common_os_transfer": ("fileName", 1000),
}
#: A payload's size in bytes as the flow carries it (a batch of enrollment records, a
#: status update, a file's message); files' rows are in their segments.
PAYLOAD_BYTES = {
    "enrollment_request": 4000,
    "enrollment_sync": 1500,
    "common_error_handler": 2000,
    "program_rule_sync": 6000,
    "aggregator_sync": 3000,
}
DEFAULT_PAYLOAD_BYTES = 700
FILE_FLOWS = ("event_device_reservation", "event_device_outcome")
SEGMENT_ROWS = 1000
PAYLOAD_DAYS = 7

#: Bytes a filled instance takes with its rows and indexes, measured on fills of 200,000.
BYTES_PER_INSTANCE = {"postgresql": 2600, "sqlite": 1700}

TARGET_MS = {"postgresql": 200.0, "sqlite": 300.0}
PURGE_TARGET_PER_SECOND = 20_000
TRIGGER_ADDED_P99_MS = 20.0
INSTANCES_PER_CHUNK = 50_000
SERVER = "postgresql://postgres@127.0.0.1:5432"


class TimeText:
    """A moment (seconds since the epoch) as the database takes it: PostgreSQL's
    timestamptz text in UTC, or SQLite's as SQLAlchemy writes a DateTime (the UTC wall
    clock, no zone). Formatting each moment anew was half the fill's CPU: each second's
    text is made once."""

    def __init__(self, backend: str) -> None:
        self._zone = "+00" if backend == "postgresql" else ""
        self._seconds: dict[int, str] = {}

    def __call__(self, moment: float) -> str:
        second = int(moment)
        text = self._seconds.get(second)
        if text is None:
            if len(self._seconds) > 100_000:
                self._seconds.clear()
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
            self._seconds[second] = text
        return f"{text}.{int((moment - second) * 1e6):06d}{self._zone}"


@dataclass
class Chunk:
    """The rows of some instances, table by table, in each table's column order."""

    instances: list[tuple[Any, ...]] = field(default_factory=list)
    business_keys: list[tuple[Any, ...]] = field(default_factory=list)
    activities: list[tuple[Any, ...]] = field(default_factory=list)
    file_jobs: list[tuple[Any, ...]] = field(default_factory=list)
    segments: list[tuple[Any, ...]] = field(default_factory=list)


COLUMNS = {
    "instances": (
        "id, flow, status, caller, payload, reply, error, skipped_reason, attempts, "
        "resubmit_of, parent_id, received_at, updated_at, finished_at, runner, payload_purged_at"
    ),
    "business_keys": "instance_id, kind, value",
    "activities": (
        "instance_id, seq, target, operation, method, path, http_status, duration_ms, error, at"
    ),
    "file_jobs": (
        "instance_id, flow, message, state, outcome, failure, rows_set_aside, set_aside, "
        "set_aside_zlib, run, total_rows, total_segments, owner, lease_until, ack_error, "
        "derms_connection, ack, updated_at"
    ),
    "segments": (
        "instance_id, seq, first_line, row_count, rows_zlib, status, attempts, sent_again, "
        "owner, lease_until, error"
    ),
}


def message_id(instance_id: str) -> str:
    """The messageId the fill gives an instance, from its id's random digits."""
    return f"MSG-{instance_id[-12:]}"


class Mix:
    """Draws the instances, oldest first, `count` of them received evenly over `days` up
    to `now`; seeded, so that two fills of one size are alike."""

    def __init__(self, count: int, days: int, now: datetime, backend: str) -> None:
        self.count = count
        self.now = now.timestamp()
        self.first = self.now - days * 86400
        self.step = (self.now - self.first) / count
        self._time = TimeText(backend)
        self._random = random.Random(14)
        self._flows = list(FLOW_SHARES)
        self._flow_weights = list(FLOW_SHARES.values())
        self._statuses = list(STATUS_SHARES)
        self._status_weights = list(STATUS_SHARES.values())
        self._payloads = {
            flow: json.dumps({"data": "x" * PAYLOAD_BYTES.get(flow, DEFAULT_PAYLOAD_BYTES)})
            for flow in FLOW_SHARES
        }
        csv = "\n".join(
            f"DEV-{n:08d},PE-{n % 977:06d},RESERVED,2026-12-01T10:00:00Z,{n % 50}.5"
            for n in range(SEGMENT_ROWS)
        )
        self._segment_rows = zlib.compress(csv.encode())

    @property
    def chunk_count(self) -> int:
        return -(-self.count // INSTANCES_PER_CHUNK)

    def chunk(self, number: int) -> Chunk:
        """The instances drawn `number` * INSTANCES_PER_CHUNK and on, with the resubmits
        they bring; each chunk seeded of its own, so that processes draw them apart."""
        self._random.seed(14_000_000 + number)
        chunk = Chunk()
        first = number * INSTANCES_PER_CHUNK
        drawn = range(first, min(self.count, first + INSTANCES_PER_CHUNK))
        flows = self._random.choices(self._flows, self._flow_weights, k=len(drawn))
        statuses = self._random.choices(self._statuses, self._status_weights, k=len(drawn))
        for n, flow, status in zip(drawn, flows, statuses, strict=True):
            self._instance(chunk, n, flow, status)
        return chunk

    def chunks(self) -> Iterator[Chunk]:
        """Every chunk in turn, each drawn in a process of its own while the one before it
        is written: drawing one takes as long as the database takes to write it."""
        with ProcessPoolExecutor(1) as drawing:
            coming = drawing.submit(self.chunk, 0)
            for number in range(1, self.chunk_count + 1):
                chunk = coming.result()
                if number < self.chunk_count:
                    coming = drawing.submit(self.chunk, number)
                yield chunk

    def _instance(self, chunk: Chunk, n: int, flow: str, status: str) -> None:
        """Draws instance `n`, and its resubmit if it was resubmitted."""
        draw = self._random
        received = self.first + (n + draw.random()) * self.step
        if self.now - received < 60:
            status = "in_progress"
        first_id = self._add(chunk, flow, status, received, None)
        if status == "resolved" or (status == "failed" and draw.random() < 0.2):
            again = "succeeded" if status == "resolved" else "failed"
            self._add(chunk, flow, again, received + 600, first_id)

    def _add(
        self, chunk: Chunk, flow: str, status: str, received: float, resubmit_of: str | None
    ) -> str:
        draw = self._random
        # As the hub names it when it is received (ids.py): its time, then random bits.
        instance_id = str(uuid7(int(received * 1000), draw.getrandbits(RANDOM_BITS)))
        file_flow = flow in FILE_FLOWS
        finished = None if status == "in_progress" else received + draw.uniform(0.05, 2.0)
        if file_flow and finished is not None:
            finished += draw.uniform(60, 900)
        ends_succeeded = status in ("succeeded", "skipped", "resolved")
        purged = (
            finished is not None and ends_succeeded and finished < self.now - PAYLOAD_DAYS * 86400
        )
        # As the purge leaves them: JSON null (SQLAlchemy's JSON writes None so).
        payload = "null" if purged else self._payloads[flow]
        reply = "null" if purged or finished is None else '{"code": "SUCCESS"}'
        error = {
            "failed": "CPMCS answered 503: Service Unavailable (POST /enrollProgram)",
            "rejected": "payload.records[3].deviceId: field required",
        }.get(status)
        at = self._time
        chunk.instances.append(
            (
                instance_id,
                flow,
                status,
                "derms" if flow.startswith(("program_event", "event_")) else "cpmcs",
                payload,
                reply,
                error,
                "the reference leaves this status alone" if status == "skipped" else None,
                2 if resubmit_of else 1,
                resubmit_of,
                None,
                at(received),
                at(finished or received),
                at(finished) if finished is not None else None,
                None if file_flow else "serve-hub1-4242",
                (
                    at(finished + PAYLOAD_DAYS * 86400 + draw.uniform(0, 3600))
                    if purged and finished is not None
                    else None
                ),
            )
        )
        kind, per_thousand = FLOW_KEYS[flow]
        value = f"{kind[:3].upper()}-{draw.randrange(max(1, self.count * per_thousand // 1000))}"
        chunk.business_keys.append((instance_id, "messageId", message_id(instance_id)))
        chunk.business_keys.append((instance_id, kind, value))
        calls = 0 if status == "rejected" else draw.randint(1, 3)
        segments = 0
        if file_flow and finished is not None:
            total_rows = draw.randint(1000, 10000)
            segments = -(-total_rows // SEGMENT_ROWS)
            calls = segments + 1
            chunk.file_jobs.append(self._file_job(instance_id, flow, status, total_rows, finished))
            if not purged:
                for seq in range(segments):
                    chunk.segments.append(
                        (
                            instance_id,
                            seq,
                            seq * SEGMENT_ROWS + 2,
                            min(SEGMENT_ROWS, total_rows - seq * SEGMENT_ROWS),
                            self._segment_rows,
                            "accepted",
                            1,
                            False,
                            None,
                            None,
                            None,
                        )
                    )
        for seq in range(1, calls + 1):
            failed_call = status == "failed" and seq == calls
            chunk.activities.append(
                (
                    instance_id,
                    seq,
                    "derms" if file_flow and seq == calls else "cpmcs",
                    "reserveDevice" if file_flow else "actionProgramEvent",
                    "POST",
                    "/rest/v1/programEvents/PE-000123/action",
                    503 if failed_call else 200,
                    draw.uniform(20, 400),
                    "Service Unavailable" if failed_call else None,
                    at(received + seq * 0.1),
                )
            )
        return instance_id

    def _file_job(
        self, instance_id: str, flow: str, status: str, total_rows: int, finished: float
    ) -> tuple[Any, ...]:
        outcome = {"failed": "FAILURE"}.get(status, "SUCCESS")
        return (
            instance_id,
            flow,
            '{"messageId": "MSG-1", "fileName": "reservations.csv"}',
            "done",
            outcome,
            "CPMCS refused segment 3" if outcome == "FAILURE" else None,
            0,
            None,
            None,
            1,
            total_rows,
            -(-total_rows // SEGMENT_ROWS),
            None,
            None,
            None,
            "derms",
            '{"ackType": "' + outcome + '"}',
            self._time(finished),
        )


def _copy_rows(cursor: psycopg.Cursor[Any], table: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        with cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def fill_postgres(url: str, mix: Mix) -> None:
    with psycopg.connect(url) as connection:
        # The foreign keys' checks and the indexes kept up row by row were most of the
        # fill's time: the rows are whole by construction, and each index the migrations
        # made is built again, as they made it, once the rows are in.
        connection.execute("SET session_replication_role = replica")
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes JOIN pg_index "
            "ON indexrelid = (schemaname || '.' || indexname)::regclass "
            "WHERE tablename = ANY(%s) AND NOT indisprimary AND NOT indisunique",
            (list(COLUMNS),),
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.commit()
        for chunk in mix.chunks():
            with connection.transaction(), connection.cursor() as cursor:
                for table in COLUMNS:
                    _copy_rows(cursor, table, getattr(chunk, table))
            _progress(mix, chunk)
        print(f"  building {len(indexes)} indexes", file=sys.stderr, flush=True)
        connection.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            connection.execute(definition)
        # The dashboard's counts (migration 0019) are kept by triggers, which the session's
        # role left out with the foreign keys': the instances are counted once, as the
        # migration counts them (the code before 0019, run by PYTHONPATH, has no counts).
        if connection.execute("SELECT to_regclass('instance_hour_counts')").fetchone() != (None,):
            connection.execute(
                "INSERT INTO instance_hour_counts (hour, flow, status, count) "
                "SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
                "flow, status, count(*) FROM instances GROUP BY 1, 2, 3"
            )
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def fill_sqlite(path: Path, mix: Mix) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    for chunk in mix.chunks():
        with connection:
            for table in COLUMNS:
                rows = getattr(chunk, table)
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    # The script's own table and column names, no input's.
                    statement = f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})"  # noqa: S608
                    connection.executemany(statement, rows)
        _progress(mix, chunk)
    # No ANALYZE: the hub never runs it, so its SQLite plans on statistics of none.
    connection.close()


_filled = 0


def _progress(mix: Mix, chunk: Chunk) -> None:
    global _filled
    _filled += len(chunk.instances)
    print(f"  filled {_filled:,} instances", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timing:
    name: str
    samples: list[float]
    #: Work no operator waits for (run in the background): shown, not held to the target.
    waited_for: bool = True

    def percentile(self, share: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _timed(samples: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    await call(samples)  # warm: the first call pays for the connection and the plan cache
    found = []
    for n in range(samples):
        started = time.perf_counter()
        await call(n)
        found.append((time.perf_counter() - started) * 1000)
    return found


@dataclass(frozen=True)
class PurgeRun:
    instances: int
    seconds: float
    triggers_before_p99: float
    triggers_during_p99: float
    triggers: int

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0

    @property
    def added_p99(self) -> float:
        return self.triggers_during_p99 - self.triggers_before_p99


@dataclass(frozen=True)
class Results:
    backend: str
    instances: int
    #: None: a database filled before (--reuse), migrated to the head in `migrate_seconds`.
    fill_seconds: float | None
    migrate_seconds: float | None
    database_bytes: int
    timings: list[Timing]
    purge: PurgeRun | None
    migrations: list[tuple[str, float]]


async def measure(url: str, samples: int) -> list[Timing]:
    operations = Operations.of_database(url)
    instances = InstanceStore(open_engine(url))
    draw = random.Random(5)
    now = datetime.now(UTC)
    first, count = await received_span(instances)
    days = (now - first) / timedelta(days=1)
    timings: list[Timing] = []

    async def add(
        name: str, call: Callable[[int], Awaitable[object]], *, waited_for: bool = True
    ) -> None:
        print(f"  measuring {name}", file=sys.stderr, flush=True)
        timings.append(Timing(name, await _timed(samples, call), waited_for))

    def dashboard(window: timedelta) -> Callable[[int], Awaitable[object]]:
        async def page(_: int) -> object:
            # As console/pages/dashboard.py reads it: the window's hours once, the flows'
            # counts summed from them.
            since = datetime.now(UTC) - window
            hours = await operations.counts_by_hour(since)
            flow_counts(hours)
            await operations.failing_now(since)
            await operations.scheduled_runs(SCHEDULED_FLOWS, since)
            return hourly_charts(hours, since, datetime.now(UTC))

        return page

    def some_day(n: int) -> datetime:
        return now - timedelta(days=draw.uniform(1, days - 1)) + timedelta(microseconds=n)

    def search(**where: Any) -> Callable[[int], Awaitable[object]]:
        async def found(n: int) -> object:
            chosen = {k: (v(n) if callable(v) else v) for k, v in where.items()}
            return await operations.search(InstanceFilter(**chosen))

        return found

    enrollments = max(1, count * FLOW_KEYS["enrollment_request"][1] // 1000)
    ids = await _some_ids(instances)
    for label, window in (("1 h", timedelta(hours=1)), ("24 h", timedelta(days=1))):
        await add(f"dashboard {label}", dashboard(window))
    await add("dashboard 7 d", dashboard(timedelta(days=7)))
    await add(
        "search: business key (enrollmentId)",
        search(business_key=lambda n: f"ENR-{draw.randrange(enrollments)}", limit=25),
    )
    await add(
        "search: business key (messageId)",
        search(business_key=lambda n: message_id(draw.choice(ids)), limit=25),
    )
    await add(
        "search: flow + failed + 24 h window",
        search(
            flows=("program_event_status_update",),
            status="failed",
            received_from=lambda n: some_day(n),
            received_to=lambda n: some_day(n) + timedelta(days=1),
            limit=25,
        ),
    )
    await add(
        "search: flow + succeeded + 7 d window",
        search(
            flows=("enrollment_request",),
            status="succeeded",
            received_from=lambda n: now - timedelta(days=7),
            limit=25,
        ),
    )
    await add("instances, no filter, page 1", search(limit=25))
    await add("instances, one flow, page 1", search(flows=("enrollment_sync",), limit=25))
    await add(
        "instances, one flow, page 400 (offset 10,000)",
        search(flows=("enrollment_sync",), limit=25, offset=10_000),
    )
    await add("instances, no filter, offset 100,000", search(limit=50, offset=100_000))
    for label, flows, depth, limit in (
        ("one flow", ("enrollment_sync",), min(10_000, count // 20), 25),
        ("no filter", (), min(100_000, count // 2), 50),
    ):
        # The cursor a page that deep gave, found once by offset: a console or a client
        # paging by cursor holds it from the page before.
        found = await operations.search(InstanceFilter(flows=flows, limit=1, offset=depth - 1))
        if found.next_cursor is not None:
            after = PageCursor.of(found.next_cursor)
            await add(
                f"instances, {label}, by cursor {depth:,} deep",
                search(flows=flows, limit=limit, after=after),
            )
    await add("instance page", lambda n: operations.detail(draw.choice(ids)))
    files = await _some_ids(instances, FILE_FLOWS)
    if files:
        await add("instance page (a file's)", lambda n: operations.detail(draw.choice(files)))
    await add(
        "bulk resubmit selection: 7 d",
        lambda n: operations.failures_to_resubmit(
            InstanceFilter(received_from=now - timedelta(days=7)), 200
        ),
    )
    await add(
        "bulk resubmit selection: one flow, all",
        lambda n: operations.failures_to_resubmit(
            InstanceFilter(flows=("program_event_status_update",)), 200
        ),
    )
    purge = oldest_day_purge(instances, days)
    watch = StorageWatch(instances, purge)
    report = await watch.report()
    # The storage page and the scrape show the latest measure; a view that finds it a minute
    # old starts the next one in the background and does not wait for it.
    await add("storage page", lambda n: watch.report())
    await add(
        "storage measure (background, once a minute)",
        lambda n: watch._measure(datetime.now(UTC)),
        waited_for=False,
    )
    await add("/metrics scrape", lambda n: exposition(instances.engine, {}, report))
    await operations.aclose()
    await instances.aclose()
    return timings


async def received_span(store: InstanceStore) -> tuple[datetime, int]:
    """When the oldest instance was received, and how many there are (PostgreSQL's
    estimate: counting them is no part of what is measured)."""
    async with store.engine.connect() as connection:
        oldest = await connection.scalar(select(func.min(InstanceRow.received_at)))
        if store.engine.dialect.name == "postgresql":
            count = await connection.scalar(
                text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'instances'")
            )
        else:
            count = await connection.scalar(select(func.count()).select_from(InstanceRow))
    if oldest is None:
        raise harness.BenchmarkFailure("the database holds no instance")
    return as_utc(oldest), int(count or 0)


async def _some_ids(store: InstanceStore, flows: Sequence[str] = ()) -> list[str]:
    """Ids spread over the table, of `flows` if any: in the order of their last 12 digits,
    random in a v4 id and in a v7 one (whose first follow time)."""
    query = select(InstanceRow.id).order_by(func.substr(InstanceRow.id, 25)).limit(2000)
    if flows:
        query = query.where(InstanceRow.flow.in_(flows))
    async with store.engine.connect() as connection:
        return list(await connection.scalars(query))


def oldest_day_purge(instances: InstanceStore, days: float) -> Purge:
    """The oldest day goes: every outcome's instances kept a day less than the fill spans,
    and their payloads as long. (With succeeded payloads kept 7 days, as the fill left
    them, a run on a database filled hours before also purged the payloads of the hours
    since, a load that grew with the database's age and that the rate did not count.)"""
    kept = max(1, int(days) - 1)
    keep = Keep(payload_days=kept, instance_days=kept)
    retention = Retention(default=RetentionByOutcome(succeeded=keep, failed=keep, rejected=keep))
    return Purge(
        RetentionStore(instances, retention.batch_size), retention, stopping=asyncio.Event()
    )


#: How long the trigger load runs before its baseline is taken.
WARM_UP_SECONDS = 3.0


async def purge_under_load(url: str, options: argparse.Namespace) -> PurgeRun:
    """The purge of the oldest day beside a trigger load of `--trigger-rate` flows a
    second (each an instance created and finished, as a flow writes it), the triggers' p99
    taken for `--baseline-seconds` first, after WARM_UP_SECONDS of it."""
    rate: float = options.trigger_rate
    instances = InstanceStore(open_engine(url))
    first, _ = await received_span(instances)
    purge = oldest_day_purge(instances, (datetime.now(UTC) - first) / timedelta(days=1))
    during: list[float] = []
    before: list[float] = []
    # The first triggers open the store's connections and warm its caches: not counted.
    into: list[float] = []
    stop = asyncio.Event()

    async def trigger() -> None:
        started = time.perf_counter()
        instance_id = new_instance_id()
        await instances.create(
            instance_id=instance_id,
            flow="program_event_status_update",
            caller="derms",
            payload={"data": "x" * DEFAULT_PAYLOAD_BYTES},
            keys=[("messageId", message_id(instance_id)), ("programEventId", "PE-1")],
        )
        await instances.finish(
            instance_id,
            status="succeeded",
            reply={"code": "SUCCESS"},
            error=None,
            activities=[],
            keys=[],
        )
        into.append((time.perf_counter() - started) * 1000)

    async def load() -> None:
        pending: set[asyncio.Task[None]] = set()
        due = time.perf_counter()
        while not stop.is_set():
            task = asyncio.create_task(trigger())
            pending.add(task)
            task.add_done_callback(pending.discard)
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.gather(*pending)

    loader = asyncio.create_task(load())
    await asyncio.sleep(WARM_UP_SECONDS)
    into = before
    await asyncio.sleep(options.baseline_seconds)
    into = during
    # One trigger sent as the purge starts: a purge shorter than the load's interval (a small
    # fill) would otherwise have none beside it to time.
    beside = asyncio.create_task(trigger())
    started = time.perf_counter()
    report = await purge.run()
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(loader, beside)
    await instances.aclose()
    gone = report.removed.get("instances", 0)
    if not gone:
        raise harness.BenchmarkFailure("the purge removed no instance: the fill has no oldest day")
    return PurgeRun(
        instances=gone,
        seconds=elapsed,
        triggers_before_p99=Timing("before", before).percentile(0.99),
        triggers_during_p99=Timing("during", during).percentile(0.99),
        triggers=len(before) + len(during),
    )


def time_migrations(sync_url: str, since: str) -> list[tuple[str, float]]:
    """Each migration's upgrade after `since` on the filled database, one revision at a
    time, the database taken down to `since` first (what a downgrade drops, the upgrade
    makes again: a column, an index, a table's rows rewritten)."""
    config = Config()
    config.set_main_option("script_location", "derms_bridge.store:migrations")
    engine = create_engine(sync_url)

    def step(action: Callable[[Config, str], None], revision: str) -> float:
        started = time.perf_counter()
        # As `migrate` runs them: each in a transaction of its own, or none (CONCURRENTLY).
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            action(config, revision)
        return time.perf_counter() - started

    with engine.begin() as connection:
        # Down past 0007 wants every segment sent: a filled database's failed ones are not.
        connection.exec_driver_sql("UPDATE segments SET status = 'accepted'")
    revisions = sorted(
        each.revision for each in ScriptDirectory.from_config(config).walk_revisions()
    )
    print(f"  migrations: down to {since}", file=sys.stderr, flush=True)
    step(command.downgrade, since)
    times = []
    for revision in (each for each in revisions if each > since):
        print(f"  migrations: up to {revision}", file=sys.stderr, flush=True)
        times.append((revision, step(command.upgrade, revision)))
    engine.dispose()
    return times


def _database_bytes(url: str) -> int:
    if url.startswith("sqlite:///"):
        # The file and its log and shared memory: a `--reuse`d file's folder may hold others.
        path = Path(url.removeprefix("sqlite:///"))
        files = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]
        return sum(each.stat().st_size for each in files if each.exists())
    with psycopg.connect(url) as connection:
        found = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(found[0]) if found else 0


def _fill(options: argparse.Namespace) -> tuple[str, int, float]:
    """A database of its own, migrated and filled: its URL, instances and the fill's
    seconds."""
    backend: str = options.backend
    count: int = options.instances or (5_000_000 if backend == "postgresql" else 1_000_000)
    needed = count * BYTES_PER_INSTANCE[backend]
    free = shutil.disk_usage(tempfile.gettempdir()).free
    print(
        f"{backend}: {count:,} instances need about {needed / 1e9:.1f} GB "
        f"({free / 1e9:.0f} GB free)",
        file=sys.stderr,
        flush=True,
    )
    if needed * 1.2 > free:
        raise harness.BenchmarkFailure(f"not enough disk for {count:,} instances")
    mix = Mix(count, options.days, datetime.now(UTC), backend)
    if backend == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="store_scale-")) / "hub.db"
        url = f"sqlite:///{path}"
    else:
        url = f"{SERVER}/{options.database}"
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{options.database}"')
            connection.execute(f'CREATE DATABASE "{options.database}"')
    migrate(url)
    started = time.perf_counter()
    if backend == "sqlite":
        fill_sqlite(path, mix)
    else:
        fill_postgres(url, mix)
    return url, count, time.perf_counter() - started


def _drop(url: str) -> None:
    if url.startswith("sqlite:///"):
        shutil.rmtree(Path(url.removeprefix("sqlite:///")).parent, ignore_errors=True)
        return
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(options: argparse.Namespace) -> Results:
    backend: str = options.backend
    fill_seconds: float | None = None
    migrate_seconds: float | None = None
    if options.reuse:
        url = f"sqlite:///{options.reuse}" if backend == "sqlite" else f"{SERVER}/{options.reuse}"
        started = time.perf_counter()
        migrate(url)
        migrate_seconds = time.perf_counter() - started
    else:
        url, _, fill_seconds = _fill(options)
    try:
        size = _database_bytes(url)
        print(f"  {size / 1e9:.2f} GB", file=sys.stderr, flush=True)
        timings = asyncio.run(measure(url, options.samples))
        purge = None if options.no_purge else asyncio.run(purge_under_load(url, options))
        migrations = (
            time_migrations(
                url.replace("postgresql://", "postgresql+psycopg://"), options.migrations
            )
            if options.migrations and backend == "postgresql"
            else []
        )
        count = asyncio.run(_count(url))
        return Results(
            backend,
            count,
            fill_seconds,
            migrate_seconds,
            size,
            timings,
            purge,
            migrations,
        )
    finally:
        if options.keep or options.reuse:
            print(f"  kept: {url}", file=sys.stderr)
        else:
            _drop(url)


async def _count(url: str) -> int:
    store = InstanceStore(open_engine(url))
    try:
        return (await received_span(store))[1]
    finally:
        await store.aclose()


def report(results: Results) -> str:
    target = TARGET_MS[results.backend]
    rows: list[tuple[str, str]] = [
        ("database", results.backend),
        ("instances", f"{results.instances:,}"),
        ("size", f"{results.database_bytes / 1e9:.2f} GB"),
        (
            ("fill", f"{results.fill_seconds:.0f} s")
            if results.fill_seconds is not None
            else ("migrate to the head", f"{results.migrate_seconds or 0:.1f} s")
        ),
        ("", ""),
        (f"p50 / p95 (target p95 <= {target:.0f} ms)", ""),
    ]
    for timing in results.timings:
        p95 = timing.percentile(0.95)
        verdict = harness.verdict(p95 <= target) if timing.waited_for else "(not waited for)"
        rows.append(
            (f"  {timing.name}", f"{timing.percentile(0.5):8.1f} / {p95:8.1f} ms  {verdict}")
        )
    if results.purge is not None:
        purge = results.purge
        rows += [
            ("", ""),
            ("purge of the oldest day", f"{purge.instances:,} instances in {purge.seconds:.1f} s"),
            (
                f"  rate (target >= {PURGE_TARGET_PER_SECOND:,}/s)",
                f"{purge.per_second:,.0f}/s  "
                f"{harness.verdict(purge.per_second >= PURGE_TARGET_PER_SECOND)}",
            ),
            (
                "  triggers' p99 before / during",
                f"{purge.triggers_before_p99:.1f} / {purge.triggers_during_p99:.1f} ms "
                f"({purge.triggers:,} triggers)",
            ),
            (
                f"  added p99 (target <= {TRIGGER_ADDED_P99_MS:.0f} ms)",
                f"{purge.added_p99:.1f} ms  "
                f"{harness.verdict(purge.added_p99 <= TRIGGER_ADDED_P99_MS)}",
            ),
        ]
    if results.migrations:
        rows += [("", ""), ("migration upgrades", "")]
        rows += [(f"  {revision}", f"{seconds:8.2f} s") for revision, seconds in results.migrations]
    return harness.table(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--instances",
        type=harness.positive,
        help="how many (default 5,000,000 on PostgreSQL, 1,000,000 on SQLite)",
    )
    parser.add_argument("--days", type=harness.positive, default=90, help="received over")
    parser.add_argument("--samples", type=harness.positive, default=20, help="per measure")
    parser.add_argument("--trigger-rate", type=harness.positive_float, default=50.0, help="flows/s")
    parser.add_argument(
        "--baseline-seconds",
        type=harness.positive_float,
        default=10.0,
        help="the trigger load alone, before the purge",
    )
    parser.add_argument("--database", default="derms_bridge_scale", help="on PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="measure a database kept before (PostgreSQL: its name; SQLite: its file), "
        "migrated to the head first",
    )
    parser.add_argument("--no-purge", action="store_true", help="leave the purge out")
    parser.add_argument(
        "--migrations",
        metavar="REVISION",
        help="time each migration's upgrade after REVISION (0006 and on), the database "
        "taken down to it first (PostgreSQL)",
    )
    options = parser.parse_args(argv)
    return harness.report_or_fail("store_scale.py", lambda: run(options), report)


if __name__ == "__main__":
    sys.exit(main())
