"""Benchmark: flow 7 against a CPMCS that fails a share of its reserveDevice calls with 500
(issue 12 point 6): a number of runs of one file, each acknowledged SUCCESS when the hub
tries the failed segments again (`segments.retry`, its defaults).

Processes as in device_reservation.py: the two simulators (uvicorn), one hub
(``derms-bridge serve``, SQLite in a temporary directory, segments of ``--segment-rows``
rows, ``--parallelism`` in flight) serving every run, and this process, which writes the
CSV (``tests/csv_files.write_reservation_csv``), puts the CPMCS simulator's faults
(``error_rate`` of ``--failing`` on the reserveDevice path, ``error_seed`` the run's
number, so that a run fails the same calls each time), uploads the file under a new
messageId per run and waits for its acknowledgement.

Each run must end with one acknowledgement: SUCCESS is counted, FAILURE too (its value
printed); CPMCS must hold one device per row. The report gives per run the calls CPMCS
failed, the acknowledgement and the seconds. The exit code is 1 when an answer is wrong
(no acknowledgement, devices missing), 0 otherwise, PASS (every run SUCCESS) or MISS.

Run it from the repository root:

    .venv/bin/python bench/segment_retries.py [--runs 20] [--segments 200] [--failing 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from derms_bridge.sandbox.cpmcs_sim import RESERVE_DEVICE_PATH
from derms_bridge.sandbox.smtp_sink import SmtpSink
from device_reservation import (
    CLIENT_TIMEOUT,
    DERMS_CALLER,
    check_devices,
    post_file,
    reservation,
    reservations_summary,
    reset,
    wait_for_ack,
)
from harness import BenchmarkFailure, positive, positive_float, report_or_fail, table, verdict
from processes import CPMCS_SIMULATOR, DERMS_SIMULATOR, HubProcess, hub_process, simulator_process

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.csv_files import write_reservation_csv  # noqa: E402


@dataclass(frozen=True)
class RetriedRun:
    number: int
    failed_calls: int
    ack_type: str
    value: str
    seconds: float


@dataclass(frozen=True)
class Result:
    runs: list[RetriedRun]
    segments: int
    segment_rows: int
    failing: float
    parallelism: int


async def retried_run(
    hub: HubProcess,
    urls: tuple[str, str],
    csv_file: Path,
    rows: int,
    failing: float,
    number: int,
) -> RetriedRun:
    cpmcs_url, derms_url = urls
    message_id = f"RSV-RETRY-{number}"
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        await reset(client, cpmcs_url, derms_url)
        faults = {
            "error_rate": failing,
            "error_seed": number,
            "error_rate_path": RESERVE_DEVICE_PATH,
        }
        (await client.put(cpmcs_url + "/_sim/faults", json=faults)).raise_for_status()
        started = time.perf_counter()
        answer = await post_file(client, hub.url, reservation(message_id), csv_file)
        if answer.status_code != 202:
            raise BenchmarkFailure(
                f"the hub answered the file HTTP {answer.status_code}: {answer.text[:300]}"
            )
        acks = await wait_for_ack(client, derms_url, hub)
        seconds = time.perf_counter() - started
        if len(acks) != 1:
            raise BenchmarkFailure(f"DERMS received {len(acks)} acknowledgements, not one")
        ack = acks[0]["MsgAck"]
        [response] = ack["responses"]["response"]
        calls = (await client.get(cpmcs_url + "/_sim/state/calls")).json()
        summary = await reservations_summary(client, cpmcs_url)
        if ack["ackType"] == "SUCCESS":
            check_devices(summary, rows, f"hub's run {number}")
    return RetriedRun(
        number=number,
        failed_calls=calls.get(RESERVE_DEVICE_PATH, 0) - summary["calls"],
        ack_type=ack["ackType"],
        value=response["value"],
        seconds=seconds,
    )


async def retried_runs(
    hub: HubProcess, urls: tuple[str, str], csv_file: Path, rows: int, args: argparse.Namespace
) -> list[RetriedRun]:
    return [
        await retried_run(hub, urls, csv_file, rows, args.failing, number)
        for number in range(1, args.runs + 1)
    ]


def run(args: argparse.Namespace) -> Result:
    rows = args.segments * args.segment_rows
    with (
        tempfile.TemporaryDirectory(prefix="derms-bridge-bench-files-") as tmp,
        simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator") as cpmcs_url,
        simulator_process(DERMS_SIMULATOR, "the DERMS simulator") as derms_url,
        SmtpSink() as mailbox,
        hub_process(
            cpmcs_url=cpmcs_url,
            derms_url=derms_url,
            smtp_port=mailbox.port,
            caller=DERMS_CALLER,
            flow_settings={
                "segments": {"size": args.segment_rows, "parallelism": args.parallelism}
            },
        ) as hub,
    ):
        csv_file = write_reservation_csv(Path(tmp) / "devices.csv", rows)
        runs = asyncio.run(retried_runs(hub, (cpmcs_url, derms_url), csv_file, rows, args))
    return Result(
        runs=runs,
        segments=args.segments,
        segment_rows=args.segment_rows,
        failing=args.failing,
        parallelism=args.parallelism,
    )


def report(result: Result) -> str:
    succeeded = sum(run.ack_type == "SUCCESS" for run in result.runs)
    lines = [
        (
            "file",
            f"{result.segments} segments of {result.segment_rows} rows, "
            f"{result.parallelism} in flight",
        ),
        ("CPMCS failing", f"{100 * result.failing:g}% of reserveDevice calls (HTTP 500)"),
        *(
            (
                f"run {run.number}",
                f"{run.ack_type}, {run.failed_calls} calls failed, {run.seconds:.1f} s"
                + ("" if run.ack_type == "SUCCESS" else f": {run.value}"),
            )
            for run in result.runs
        ),
        ("calls failed", str(sum(run.failed_calls for run in result.runs))),
        (
            "every run SUCCESS",
            f"{succeeded} of {len(result.runs)}  {verdict(succeeded == len(result.runs))}",
        ),
    ]
    return table(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Runs of one reservation file through the hub, CPMCS failing a share "
        "of its reserveDevice calls: each must be acknowledged SUCCESS."
    )
    parser.add_argument("--runs", type=positive, default=20, help="runs of the file (20)")
    parser.add_argument("--segments", type=positive, default=200, help="segments in the file (200)")
    parser.add_argument(
        "--segment-rows", type=positive, default=1000, help="rows per segment (1000)"
    )
    parser.add_argument(
        "--failing",
        type=positive_float,
        default=0.01,
        help="the share of reserveDevice calls CPMCS fails with 500 (0.01)",
    )
    parser.add_argument("--parallelism", type=positive, default=8, help="segments in flight (8)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail("segment_retries", lambda: run(args), report)


if __name__ == "__main__":
    sys.exit(main())
