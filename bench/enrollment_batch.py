"""Benchmark: one batch of enrollment requests through the hub, against the reference's loop.

The CPMCS simulator adds a fixed latency (20 ms by default) to every enrollProgram call.
Two things are timed, each the same way: wall time from just before the first HTTP request
leaves an httpx client on loopback until the last answer has been read.

* hub: one ``POST /enroll-to-dacs`` carrying N enrollment requests to the hub, served for
  real by uvicorn on loopback (SQLite in a temporary directory, every run tracked), which
  sends the N enrollProgram calls to the simulator, several at once
  (``limits.enrollment_concurrency``).
* sequential: the same N enrollProgram bodies (built with the hub's own transformation and
  the repository's lookups, fresh transactionIds) sent straight to the simulator one after
  the other, each awaited before the next, as the reference's loop does. This takes
  N x latency by design: about 20 s for 1,000 requests.

It prints both times and their ratio (hub / sequential); the target is a ratio of at most
0.10. Nothing is asserted on time: the exit code is 1 only when an answer is wrong (the
hub's MsgAck not SUCCESS, or not one response per request in order, or a simulator call
refused), and 0 otherwise, PASS or MISS.

Run it from the repository root:

    .venv/bin/python bench/enrollment_batch.py [--requests N] [--concurrency C] [--latency-ms L]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.flows.enrollment_request import to_enroll_program
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.sandbox.cpmcs_sim import ENROLL_PATH, create_cpmcs_app
from derms_bridge.sandbox.run import SANDBOX_CALLERS, SandboxPorts, sandbox_settings
from derms_bridge.sandbox.servers import ServerThread, free_port
from derms_bridge.schemas.derms import EnrollmentRequest, EnrollmentRequestMessage
from derms_bridge.settings import Limits, Settings
from derms_bridge.store.database import migrate
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict

LOOKUPS_DIR = Path(__file__).resolve().parent.parent / "config" / "lookups"
TARGET_RATIO = 0.10
#: The upper bound settings.Limits puts on enrollment_concurrency.
MAX_CONCURRENCY = 256
#: Generous: the hub's one answer comes only after every enrollProgram call has returned.
CLIENT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


@dataclass(frozen=True)
class Result:
    requests: int
    latency_ms: int
    concurrency: int
    hub_seconds: float
    sequential_seconds: float

    @property
    def ratio(self) -> float:
        return self.hub_seconds / self.sequential_seconds


def enrollment_request(message_id: str) -> dict[str, Any]:
    """One enrollment request as DERMS sends it (the shape of tests/payloads.py)."""
    return {
        "messageId": message_id,
        "customerInfo": {
            "cisPersonId": "1234567890",
            # An account and a device of its own: the hub sends those of one in turn.
            "cisAccountId": f"ACCT-{message_id}",
            "name": "Ada Lovelace",
            "homePhone": "555-0100",
            "email": "ada@example.com",
        },
        "programInfo": {
            "cisServiceAgreementId": "3456789012",
            "programCode": "BYOT",
            "startDateTimeISO": "2026-12-01T08:00:00.000-05:00",
            "endDateTimeISO": "2027-11-30T23:59:59.000Z",
        },
        "locationInfo": {
            "division": "NORTH",
            "cisPremiseId": "4567890123",
            "cisServicePointId": "5678901234",
            "timeZone": "US/Eastern",
            "address1": "1 Main St",
            "city": "Springfield",
            "country": "USA",
            "state": "IL",
            "postal": "62701",
        },
        "assetInfo": {
            "installationMethod": "SELF",
            "assetOwnership": "W1CO",
            "assetList": [
                {
                    "sequence": 1,
                    "assetId": f"T-{message_id}",
                    "specification": "ECOBEE!SMART5",
                    "assetType": "THERMOSTAT",
                    "badgeNo": "B-1",
                    "serialNo": "SN-1",
                    "nicId": f"NIC-{message_id}",
                    "headEndSystem": "ECOBEE",
                }
            ],
        },
    }


def enrollment_message(requests: int) -> dict[str, Any]:
    return {
        "drmsInstanceId": "BENCH-1",
        "enrollmentRequests": [enrollment_request(f"BENCH-{i:05d}") for i in range(requests)],
    }


def enroll_program_bodies(message: dict[str, Any], lookups: Lookups) -> list[dict[str, Any]]:
    """The CPMCS bodies the hub sends for `message`, under fresh transactionIds."""
    parsed = EnrollmentRequestMessage.model_validate(message)
    bodies = []
    for er in map(EnrollmentRequest.model_validate, parsed.enrollmentRequests):
        body = to_enroll_program(er, lookups).model_dump(mode="json", exclude_none=True)
        body["transactionId"] = f"SEQ-{er.messageId}"
        bodies.append(body)
    return bodies


async def reset_simulator(cpmcs_url: str, latency_ms: int) -> None:
    async with httpx.AsyncClient(base_url=cpmcs_url, timeout=10.0) as admin:
        (await admin.delete("/_sim/state")).raise_for_status()
        (await admin.put("/_sim/faults", json={"latency_ms": latency_ms})).raise_for_status()


async def simulator_enrollments(cpmcs_url: str) -> int:
    async with httpx.AsyncClient(base_url=cpmcs_url, timeout=10.0) as admin:
        response = await admin.get("/_sim/state/enrollments")
        response.raise_for_status()
        enrollments: list[Any] = response.json()
        return len(enrollments)


def check_hub_answer(response: httpx.Response, message_ids: list[str]) -> None:
    if response.status_code != 200:
        raise BenchmarkFailure(
            f"the hub answered HTTP {response.status_code}: {response.text[:500]}"
        )
    if not response.headers.get("X-Instance-Id"):
        raise BenchmarkFailure("the hub's answer has no X-Instance-Id: the run was not tracked")
    ack = response.json()["MsgAck"]
    if ack["ackType"] != "SUCCESS":
        failed = [r for r in ack["responses"]["response"] if r["responseCode"] != "SUCCESS"]
        raise BenchmarkFailure(
            f"the hub's ackType is {ack['ackType']}, {len(failed)} responses not SUCCESS; "
            f"first: {failed[:3]}"
        )
    answered = [r["id"] for r in ack["responses"]["response"]]
    if answered != message_ids:
        raise BenchmarkFailure(
            f"the hub answered {len(answered)} responses for {len(message_ids)} requests, "
            "or not in the order received"
        )
    missing = [r["id"] for r in ack["responses"]["response"] if not r.get("dacsMessageId")]
    if missing:
        raise BenchmarkFailure(f"{len(missing)} responses carry no dacsMessageId: {missing[:3]}")


async def measure_hub(hub_url: str, cpmcs_url: str, message: dict[str, Any]) -> float:
    """One POST /enroll-to-dacs with the whole batch; seconds until its answer is read."""
    message_ids = [er["messageId"] for er in message["enrollmentRequests"]]
    async with httpx.AsyncClient(
        base_url=hub_url, auth=SANDBOX_CALLERS["derms"], timeout=CLIENT_TIMEOUT
    ) as client:
        started = time.perf_counter()
        response = await client.post("/enroll-to-dacs", json=message)
        elapsed = time.perf_counter() - started
    check_hub_answer(response, message_ids)
    enrolled = await simulator_enrollments(cpmcs_url)
    if enrolled != len(message_ids):
        raise BenchmarkFailure(
            f"the simulator holds {enrolled} enrollments after the hub's batch, "
            f"not {len(message_ids)}"
        )
    return elapsed


async def measure_sequential(cpmcs_url: str, bodies: list[dict[str, Any]]) -> float:
    """The reference's loop: each enrollProgram awaited before the next is sent."""
    async with httpx.AsyncClient(base_url=cpmcs_url, timeout=CLIENT_TIMEOUT) as client:
        started = time.perf_counter()
        statuses = []
        for body in bodies:
            response = await client.post(ENROLL_PATH, json=body)
            statuses.append(response.status_code)
        elapsed = time.perf_counter() - started
    refused = [(body["transactionId"], s) for body, s in zip(bodies, statuses, strict=True)]
    refused = [pair for pair in refused if pair[1] != 200]
    if refused:
        raise BenchmarkFailure(
            f"the simulator refused {len(refused)} sequential enrollProgram calls: {refused[:3]}"
        )
    enrolled = await simulator_enrollments(cpmcs_url)
    if enrolled != len(bodies):
        raise BenchmarkFailure(
            f"the simulator holds {enrolled} enrollments after the loop, not {len(bodies)}"
        )
    return elapsed


async def measure(
    hub_url: str, cpmcs_url: str, requests: int, latency_ms: int, lookups: Lookups
) -> tuple[float, float]:
    message = enrollment_message(requests)
    bodies = enroll_program_bodies(message, lookups)
    await reset_simulator(cpmcs_url, latency_ms)
    hub_seconds = await measure_hub(hub_url, cpmcs_url, message)
    await reset_simulator(cpmcs_url, latency_ms)
    sequential_seconds = await measure_sequential(cpmcs_url, bodies)
    return hub_seconds, sequential_seconds


def hub_settings(cpmcs_port: int, database_url: str, concurrency: int | None) -> Settings:
    ports = SandboxPorts(hub=free_port(), cpmcs=cpmcs_port, derms=free_port(), smtp=free_port())
    settings = sandbox_settings(ports, database_url, LOOKUPS_DIR)
    if concurrency is None:
        return settings
    limits = Limits(
        max_json_body_bytes=settings.limits.max_json_body_bytes,
        enrollment_concurrency=concurrency,
    )
    return settings.model_copy(update={"limits": limits})


def run(requests: int, latency_ms: int, concurrency: int | None) -> Result:
    lookups = load_lookups(LOOKUPS_DIR)
    with tempfile.TemporaryDirectory(prefix="derms-bridge-bench-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'hub.db'}"
        migrate(database_url)
        cpmcs = ServerThread(create_cpmcs_app(seed=1), name="CPMCS simulator")
        cpmcs.start()
        try:
            settings = hub_settings(cpmcs.port, database_url, concurrency)
            hub = ServerThread(
                create_app(build_hub(settings, lookups)), port=settings.server.port, name="hub"
            )
            hub.start()
            try:
                hub_seconds, sequential_seconds = asyncio.run(
                    measure(hub.url, cpmcs.url, requests, latency_ms, lookups)
                )
            finally:
                hub.stop()
            return Result(
                requests=requests,
                latency_ms=latency_ms,
                concurrency=settings.limits.enrollment_concurrency,
                hub_seconds=hub_seconds,
                sequential_seconds=sequential_seconds,
            )
        finally:
            cpmcs.stop()


def report(result: Result) -> str:
    rows = [
        ("requests", f"{result.requests:,}"),
        ("latency per call", f"{result.latency_ms} ms"),
        ("hub concurrency", str(result.concurrency)),
        ("hub", f"{result.hub_seconds:.3f} s"),
        ("sequential", f"{result.sequential_seconds:.3f} s"),
        ("ratio (hub/sequential)", f"{result.ratio:.4f}"),
        ("target", f"<= {TARGET_RATIO:.2f}"),
        ("result", verdict(result.ratio <= TARGET_RATIO)),
    ]
    return table(rows)


def concurrency(text: str) -> int:
    value = positive(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"{value} is above {MAX_CONCURRENCY}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one batch of enrollment requests through the hub against "
        "the reference's sequential loop, with CPMCS adding latency to each call."
    )
    parser.add_argument(
        "--requests",
        type=positive,
        default=1000,
        help="enrollment requests in the batch (default 1000; the sequential loop takes "
        "requests x latency)",
    )
    parser.add_argument(
        "--concurrency",
        type=concurrency,
        default=None,
        help=f"the hub's limits.enrollment_concurrency, 1 to {MAX_CONCURRENCY} "
        f"(default: the settings' default, {Limits().enrollment_concurrency})",
    )
    parser.add_argument(
        "--latency-ms",
        type=positive,
        default=20,
        help="milliseconds the CPMCS simulator adds to each call (default 20)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "enrollment_batch", lambda: run(args.requests, args.latency_ms, args.concurrency), report
    )


if __name__ == "__main__":
    sys.exit(main())
