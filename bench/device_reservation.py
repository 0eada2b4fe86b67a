"""Benchmark: an Event Device Reservation file (flow 7) through the hub to the CPMCS simulator,
beside a plain httpx client sending the same reserveDevice bodies to the same simulator, in
one run; and the hub's peak memory for a small file and a large one.

Processes, so that none shares another's GIL:

* the CPMCS simulator and the DERMS simulator (which takes the acknowledgement): uvicorn on
  ``derms_bridge.sandbox.cpmcs_sim:create_cpmcs_app --factory`` and
  ``derms_bridge.sandbox.derms_sim:create_derms_app --factory``;
* the hub: ``derms-bridge serve`` with a settings YAML written to a temporary directory
  (SQLite there, migrated on start; segments of 1,000 rows, ``--parallelism`` in flight; the
  derms caller's argon2 hash from ``hash_password``; SMTP to an aiosmtpd sink in this
  process). A fresh hub process serves each file, so that each peak is its own;
* this process: writes the CSV files (``tests/csv_files.write_reservation_csv``, imported
  with the repository's root put on ``sys.path``), uploads them, and is the plain client.

Hub run: first one authenticated request (a JSON body, answered 415 and kept as a rejected
message, with its email): the hub checks the
derms caller's password with argon2 once per process, which takes 64 MiB for a moment, and
remembers it. Then the peak resident set (``VmHWM`` in ``/proc/<pid>/status``) is read, for
the process's whole life so far, and reset (``/proc/<pid>/clear_refs``), so that the peak read
once the ack has come is the file's. Then the CSV is POSTed to ``/device-reservation-to-dacs``
as multipart built by hand, the file streamed from disk in 64 KiB chunks
(``tests/csv_files.file_chunks``) with its Content-Length, so the client never holds it. The
time runs from the start of the POST until the DERMS simulator has received the
acknowledgement (``GET /_sim/state/received/wait``, answered when it comes: polling would
take CPU from the simulator that the plain run does not); then the CPMCS simulator must hold one
device per row (``/_sim/state/reservations/summary``), the acknowledgement must be SUCCESS for
the message, and the process-complete email must have come.

Before either arm is timed, the plain client sends the large file's bodies once: the
simulator's first file of a size costs it more (its process grows to hold the devices), and
whichever arm came first would pay for it.

Plain run: the same rows read back from the same file, cut in the same segments of 1,000,
each turned into its reserveDevice body by the flow's own ``to_reserve_device`` and written
as the hub writes it (``segment_json``: the same bytes), beforehand; one
``httpx.AsyncClient`` sends them with the same parallelism to the same simulator (its
state cleared first), timed from the first send to the last answer.
httpx, as the issue asks: with 8 bodies of 146 KB in flight the simulator, not the client,
sets the pace, and aiohttp (the hub's client) sends them no faster.

Targets: the hub's rows per second at least 0.8 of the plain client's; the hub's peak memory
under 300 MB for both files (the whole-life peak, argon2's included), and the peaks while
the two files went within 20% of each other (argon2's moment, the same for both, would hide
any difference). Nothing is asserted on time or memory: the exit code is 1 only when an
answer is wrong, 0 otherwise, PASS or MISS.

Run it from the repository root:

    .venv/bin/python bench/device_reservation.py [--rows N] [--small-rows N] [--parallelism P]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from derms_bridge.flows.event_device_reservation import to_reserve_device
from derms_bridge.flows.ports import segment_json
from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.cpmcs_sim import RESERVE_DEVICE_PATH
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.schemas.event_device_reservation import ReservationMessage
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict
from processes import (
    CPMCS_SIMULATOR,
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    BenchCaller,
    HubProcess,
    hub_process,
    simulator_process,
)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # tests/csv_files.py writes the files: the same rows the tests use, in constant memory.
    sys.path.insert(0, str(REPO))

from tests.csv_files import file_chunks, write_reservation_csv  # noqa: E402

HUB_ROUTE = "/device-reservation-to-dacs"
ACK_ROUTE = "/device-reservation-ack"
DERMS_CALLER = BenchCaller("derms", "derms", "derms-bench")

#: Rows per segment: the hub's default, and the plain client's bodies.
SEGMENT_ROWS = 1000

TARGET_RATIO = 0.8
TARGET_PEAK_MB = 300.0
TARGET_PEAK_SPREAD = 0.20

#: How long a file may take from the POST to the acknowledgement before the run is wrong.
ACK_SECONDS = 1800.0
MAIL_SECONDS = 30.0
#: How long one wait for the acknowledgement lasts before the hub is checked on.
WAIT_SECONDS = 5.0
CLIENT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


def reservation(message_id: str) -> dict[str, Any]:
    """The trigger's message, for the event tests/csv_files.py writes its rows for."""
    return {
        "drmsInstanceId": "DRMS-BENCH",
        "messageId": message_id,
        "eventId": "EV-1",
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }


# ---------------------------------------------------------------------------------------------
# The hub's run


@dataclass(frozen=True)
class HubRun:
    rows: int
    seconds: float
    intake_seconds: float
    #: VmHWM after start-up and one authenticated request: argon2 verifies with 64 MiB.
    ready_peak_mb: float
    #: VmRSS just before the POST.
    rest_mb: float
    #: VmHWM once the run is over: since the reset before the POST when `peak_reset`, else
    #: over the process's life.
    peak_mb: float
    peak_reset: bool
    duplicates: int
    #: The hub's CPU time until its answer to the POST, and from then until the ack.
    intake_cpu_seconds: float
    sending_cpu_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def process_peak_mb(self) -> float:
        """The peak over the process's whole life."""
        return max(self.ready_peak_mb, self.peak_mb)


def multipart(message: dict[str, Any], csv_file: Path) -> tuple[bytes, bytes, str, int]:
    """What goes before and after the file's bytes, the boundary, and the body's length."""
    boundary = f"derms-bridge-bench-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="message"\r\n\r\n'
        f"{json.dumps(message)}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{csv_file.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, boundary, len(head) + csv_file.stat().st_size + len(tail)


async def post_file(
    client: httpx.AsyncClient, hub_url: str, message: dict[str, Any], csv_file: Path
) -> httpx.Response:
    """The file streamed from disk inside a multipart body of known length."""
    head, tail, boundary, length = multipart(message, csv_file)

    async def body() -> AsyncIterator[bytes]:
        yield head
        for chunk in file_chunks(csv_file):
            yield chunk
        yield tail

    return await client.post(
        hub_url + HUB_ROUTE,
        content=body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        },
        auth=DERMS_CALLER.auth,
    )


async def wait_for_ack(
    client: httpx.AsyncClient, derms_url: str, hub: HubProcess
) -> list[dict[str, Any]]:
    """The acknowledgements DERMS received, once it has one. The DERMS simulator answers
    the wait when the ack comes in: polling instead would wake this process and the
    simulator every few milliseconds while the hub sends, CPU the plain client's run
    does not share."""
    deadline = time.monotonic() + ACK_SECONDS
    while True:
        waited = await client.get(
            derms_url + "/_sim/state/received/wait",
            params={"route": ACK_ROUTE, "seconds": WAIT_SECONDS},
        )
        waited.raise_for_status()
        acks: list[dict[str, Any]] = [received["body"] for received in waited.json()]
        if acks:
            return acks
        if not hub.alive():
            raise BenchmarkFailure("the hub exited before DERMS had the acknowledgement")
        if time.monotonic() > deadline:
            raise BenchmarkFailure(f"DERMS had no acknowledgement within {ACK_SECONDS:g} s")


def check_ack(acks: list[dict[str, Any]], message_id: str) -> None:
    if len(acks) != 1:
        raise BenchmarkFailure(f"DERMS received {len(acks)} acknowledgements, not one")
    try:
        ack = acks[0]["MsgAck"]
        [response] = ack["responses"]["response"]
        answered = (ack["ackType"], response["id"], response["responseCode"])
    except (KeyError, TypeError, ValueError):
        raise BenchmarkFailure(f"the acknowledgement is no MsgAck: {acks[0]!r:.300}") from None
    if answered != ("SUCCESS", message_id, "SUCCESS"):
        raise BenchmarkFailure(
            f"the acknowledgement is {answered}, not SUCCESS for {message_id}: "
            f"{response.get('value')!r:.300}"
        )


async def reservations_summary(client: httpx.AsyncClient, cpmcs_url: str) -> dict[str, Any]:
    summary: dict[str, Any] = (
        await client.get(cpmcs_url + "/_sim/state/reservations/summary")
    ).json()
    return summary


def check_devices(summary: dict[str, Any], rows: int, arm: str) -> None:
    if summary["devices"] != rows:
        raise BenchmarkFailure(
            f"after the {arm} run the CPMCS simulator holds {summary['devices']:,} devices, "
            f"not {rows:,} (summary {summary})"
        )


async def reset(client: httpx.AsyncClient, *urls: str) -> None:
    for url in urls:
        (await client.delete(url + "/_sim/state")).raise_for_status()


async def hub_run(
    hub: HubProcess,
    cpmcs_url: str,
    derms_url: str,
    mailbox: SmtpSink,
    csv_file: Path,
    rows: int,
) -> HubRun:
    message_id = f"RSV-BENCH-{rows}"
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        await reset(client, cpmcs_url, derms_url)
        mailbox.clear()
        # The hub checks the derms caller's password with argon2 once per process (64 MiB for
        # a moment), then remembers it: done here, so that the peak measured is the file's.
        warm_up = await client.post(hub.url + HUB_ROUTE, json={}, auth=DERMS_CALLER.auth)
        if warm_up.status_code != 415:
            raise BenchmarkFailure(
                f"the hub answered a JSON body HTTP {warm_up.status_code}, not 415: "
                f"{warm_up.text[:300]}"
            )
        ready_peak_mb = hub.memory_mb("VmHWM")
        rest_mb = hub.memory_mb("VmRSS")
        peak_reset = hub.reset_peak()
        cpu_before = hub.cpu_seconds()
        started = time.perf_counter()
        answer = await post_file(client, hub.url, reservation(message_id), csv_file)
        intake_seconds = time.perf_counter() - started
        cpu_answered = hub.cpu_seconds()
        if answer.status_code != 202 or answer.json().get("resumed") is not False:
            raise BenchmarkFailure(
                f"the hub answered the file HTTP {answer.status_code}: {answer.text[:300]}"
            )
        acks = await wait_for_ack(client, derms_url, hub)
        seconds = time.perf_counter() - started
        cpu_acked = hub.cpu_seconds()
        check_ack(acks, message_id)
        summary = await reservations_summary(client, cpmcs_url)
        check_devices(summary, rows, "hub")
    # The warm-up's refused request is kept as a rejected message and emailed too: the
    # process-complete email is looked for among whatever has come.
    deadline = time.monotonic() + MAIL_SECONDS
    while not any("complete: SUCCESS" in mail.subject for mail in mailbox.messages()):
        if time.monotonic() > deadline:
            subjects = [mail.subject for mail in mailbox.messages()]
            raise BenchmarkFailure(f"no process-complete SUCCESS email: {subjects}")
        await asyncio.sleep(0.05)
    return HubRun(
        rows=rows,
        seconds=seconds,
        intake_seconds=intake_seconds,
        ready_peak_mb=ready_peak_mb,
        rest_mb=rest_mb,
        peak_mb=hub.memory_mb("VmHWM"),
        peak_reset=peak_reset,
        duplicates=int(summary["duplicates"]),
        intake_cpu_seconds=cpu_answered - cpu_before,
        sending_cpu_seconds=cpu_acked - cpu_answered,
    )


# ---------------------------------------------------------------------------------------------
# The plain client's run


def segment_bodies(csv_file: Path, message_id: str) -> list[bytes]:
    """The file's rows, cut as the hub cuts them, as the reserveDevice bodies the hub sends,
    byte for byte: the flow's own transformation, written as the hub keeps and sends it."""
    message = ReservationMessage.model_validate(reservation(message_id))
    lookups = load_lookups(LOOKUPS_DIR)
    bodies = []
    with csv_file.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader)
        while rows := list(islice(reader, SEGMENT_ROWS)):
            bodies.append(segment_json(to_reserve_device(message, rows, lookups)).encode())
    return bodies


@dataclass(frozen=True)
class PlainRun:
    seconds: float
    #: This process's CPU time meanwhile: the plain client's.
    cpu_seconds: float


async def plain_run(cpmcs_url: str, bodies: list[bytes], parallelism: int) -> PlainRun:
    """Seconds from the first send to the last answer, `parallelism` in flight."""
    limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
    async with httpx.AsyncClient(
        base_url=cpmcs_url, limits=limits, timeout=CLIENT_TIMEOUT
    ) as client:
        await reset(client, cpmcs_url)
        queue = iter(enumerate(bodies, start=1))

        async def sender() -> None:
            # One shared iterator: each sender takes the next body when its last is answered.
            for number, body in queue:
                answer = await client.post(
                    RESERVE_DEVICE_PATH,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if answer.status_code != 200:
                    raise BenchmarkFailure(
                        f"the simulator answered body {number} HTTP {answer.status_code}: "
                        f"{answer.text[:300]}"
                    )

        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(parallelism)))
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_before
    return PlainRun(seconds, cpu_seconds)


# ---------------------------------------------------------------------------------------------
# The whole run


@dataclass(frozen=True)
class Result:
    rows: int
    segments: int
    parallelism: int
    file_mb: float
    small: HubRun
    large: HubRun
    plain: PlainRun
    #: The plain client's untimed first pass, which warms the simulator up.
    warm_up: PlainRun
    database_url: str | None

    @property
    def plain_rows_per_second(self) -> float:
        return self.rows / self.plain.seconds

    @property
    def ratio(self) -> float:
        return self.large.rows_per_second / self.plain_rows_per_second

    @property
    def peak_spread(self) -> float:
        """How far the large file's peak is from the small one's, as a fraction of the small."""
        return abs(self.large.peak_mb - self.small.peak_mb) / self.small.peak_mb


async def hub_runs(
    sizes: list[tuple[Path, int]],
    cpmcs_url: str,
    derms_url: str,
    mailbox: SmtpSink,
    parallelism: int,
    database_url: str | None,
) -> list[HubRun]:
    runs = []
    for csv_file, rows in sizes:
        with hub_process(
            cpmcs_url=cpmcs_url,
            derms_url=derms_url,
            smtp_port=mailbox.port,
            caller=DERMS_CALLER,
            flow_settings={"segments": {"size": SEGMENT_ROWS, "parallelism": parallelism}},
            database_url=database_url,
        ) as hub:
            runs.append(await hub_run(hub, cpmcs_url, derms_url, mailbox, csv_file, rows))
    return runs


def run(rows: int, small_rows: int, parallelism: int, database_url: str | None) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="derms-bridge-bench-files-") as tmp,
        simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator") as cpmcs_url,
        simulator_process(DERMS_SIMULATOR, "the DERMS simulator") as derms_url,
        SmtpSink() as mailbox,
    ):
        small_file = write_reservation_csv(Path(tmp) / "small.csv", small_rows)
        large_file = write_reservation_csv(Path(tmp) / "large.csv", rows)
        bodies = segment_bodies(large_file, "RSV-BENCH-PLAIN")
        # The simulator's first file of this size costs it more than any later one (its
        # process grows to hold the devices: 0.1 to 1.2 s more here), whichever arm sends
        # it: the warm-up sends it, so that the timed runs meet the same simulator.
        warm_up = asyncio.run(plain_run(cpmcs_url, bodies, parallelism))
        small, large = asyncio.run(
            hub_runs(
                [(small_file, small_rows), (large_file, rows)],
                cpmcs_url,
                derms_url,
                mailbox,
                parallelism,
                database_url,
            )
        )
        plain = asyncio.run(plain_run(cpmcs_url, bodies, parallelism))
        del bodies
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            summary = client.get(cpmcs_url + "/_sim/state/reservations/summary").json()
        check_devices(summary, rows, "plain client")
        file_mb = large_file.stat().st_size / 1e6
    return Result(
        rows=rows,
        segments=-(-rows // SEGMENT_ROWS),
        parallelism=parallelism,
        file_mb=file_mb,
        small=small,
        large=large,
        plain=plain,
        warm_up=warm_up,
        database_url=database_url,
    )


def report(result: Result) -> str:
    small, large = result.small, result.large
    peaks_under = max(small.process_peak_mb, large.process_peak_mb) < TARGET_PEAK_MB
    file_peak = (
        "while the file went (VmHWM reset just before the POST)"
        if small.peak_reset and large.peak_reset
        else "over the process's life (/proc/<pid>/clear_refs refused a reset)"
    )
    lines = [
        (
            "hub",
            "derms-bridge serve, a fresh process per file, "
            + (
                "on " + result.database_url.split("://")[0]
                if result.database_url
                else "each with a SQLite file of its own"
            ),
        ),
        ("CPMCS, DERMS simulators", "processes of their own"),
        (
            "simulator warm-up",
            "the plain client's bodies sent once before the timed runs "
            f"({result.warm_up.seconds:.2f} s)",
        ),
        (
            "plain client",
            "httpx.AsyncClient, as the issue asks; the hub's bodies, built before its clock starts",
        ),
        ("", ""),
        (f"throughput at {result.rows:,} rows", ""),
        ("file", f"{result.file_mb:,.1f} MB, streamed from disk"),
        (
            "segments",
            f"{result.segments:,} of {SEGMENT_ROWS:,} rows, {result.parallelism} in flight",
        ),
        (
            "hub",
            f"{large.rows_per_second:,.0f} rows/s ({large.seconds:.2f} s: the POST answered "
            f"after {large.intake_seconds:.2f} s, DERMS had the ack "
            f"{large.seconds - large.intake_seconds:.2f} s later)",
        ),
        (
            "plain httpx client",
            f"{result.plain_rows_per_second:,.0f} rows/s ({result.plain.seconds:.2f} s)",
        ),
        (
            "CPU while sending",
            f"hub {large.sending_cpu_seconds:.2f} s (and {large.intake_cpu_seconds:.2f} s "
            f"before its answer), plain client {result.plain.cpu_seconds:.2f} s",
        ),
        ("ratio (hub/plain)", f"{result.ratio:.3f}"),
        (
            f"hub at {small.rows:,} rows",
            f"{small.rows_per_second:,.0f} rows/s ({small.seconds:.2f} s)",
        ),
        ("", ""),
        ("hub peak memory", file_peak),
        *(
            (
                f"{run.rows:,} rows",
                f"{run.peak_mb:,.1f} MB ({run.rest_mb:,.1f} MB at rest before the POST)",
            )
            for run in (small, large)
        ),
        ("difference", f"{100 * result.peak_spread:.1f} %"),
        (
            "process peak, whole life",
            f"{small.process_peak_mb:,.1f} MB and {large.process_peak_mb:,.1f} MB "
            "(start-up, then argon2's 64 MiB at the first authenticated request)",
        ),
        ("", ""),
        ("targets", ""),
        (f"ratio >= {TARGET_RATIO:g}", verdict(result.ratio >= TARGET_RATIO)),
        (f"peak < {TARGET_PEAK_MB:g} MB at both sizes", verdict(peaks_under)),
        (
            f"peaks within {100 * TARGET_PEAK_SPREAD:g}%",
            verdict(result.peak_spread <= TARGET_PEAK_SPREAD),
        ),
    ]
    return table(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A reservation file through the hub to the CPMCS simulator, against the "
        "same reserveDevice bodies from a plain httpx client; and the hub's peak memory."
    )
    parser.add_argument(
        "--rows", type=positive, default=1_000_000, help="the large file's rows (default 1000000)"
    )
    parser.add_argument(
        "--small-rows",
        type=positive,
        default=100_000,
        help="the small file's rows, for the memory comparison (default 100000)",
    )
    parser.add_argument(
        "--parallelism",
        type=positive,
        default=8,
        help="segments in flight, the hub's segments.parallelism and the plain client's "
        "(default 8)",
    )
    parser.add_argument(
        "--database-url",
        help="the hubs' database, instead of a SQLite file of each hub's own: an empty "
        "one, such as postgresql://postgres@127.0.0.1:5432/bench",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "device_reservation",
        lambda: run(args.rows, args.small_rows, args.parallelism, args.database_url),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
