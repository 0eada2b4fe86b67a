"""Benchmark: Program Event Status Updates (flow 6) through the hub, against the same CPMCS
calls sent straight to the CPMCS simulator, in one run.

Three processes, so that no two of them share a GIL:

* the CPMCS simulator: uvicorn on ``derms_bridge.sandbox.cpmcs_sim:create_cpmcs_app
  --factory``, started with ``subprocess``;
* the hub: uvicorn in a ``ServerThread`` inside a child process (multiprocessing, spawn),
  with tracking on: every run is an instance in SQLite in a temporary directory,
  migrated first, exactly as the trigger route writes it;
* this process: the load generator. With ``--hub-in-process`` the hub's ServerThread
  runs here instead, as bench/enrollment_batch.py does, sharing this process's GIL with
  the load generator; the default keeps them apart so the side-by-side is fair.

The load generator is aiohttp, not httpx: one httpx.AsyncClient with 32 requests in
flight manages about 250 requests per second against this simulator on this machine,
aiohttp over 2,500 (docs/architecture.md), so httpx would measure itself.

The work, built with the flow's own transformations and the repository's lookups:

* hub: ``POST /stage-status-to-dacs`` with a stage status; the reply must be a MsgAck
  SUCCESS whose one response is the message's id with value CREATED or the action.
* direct: the createProgramEvent or actionProgramEvent body the hub would send for the
  same stage, straight to the simulator; the answer must be 200.

Phase 1, throughput: N flows (default 2,000) as N/2 stages, each SCHEDULED then
IN_PROGRESS, with a bounded number in flight (default 32); flows (or calls) per second.
Phase 2, latency: an open-loop load paced at R requests per second (default 100) for D
seconds (default 5), alternating a new SCHEDULED stage and a COMPLETED for a stage of
phase 1, each completed once; each request's latency runs from the moment it was due to
be sent until its answer has been read. The latency the hub adds is the hub's percentile
less the direct one. A short warm-up of both precedes each phase and is not counted.

Targets (2-core machine, tracking on): the hub sustains at least 300 flows per second and
adds at most 5 ms at p50 and 20 ms at p99 at 100 requests per second. Nothing is asserted
on time: the exit code is 1 only when an answer is wrong, 0 otherwise, PASS or MISS.

Run it from the repository root:

    .venv/bin/python bench/sync_flows.py [--flows N] [--in-flight C] [--rate R]
        [--seconds D] [--hub-in-process] [--trace-export URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import aiohttp

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.flows.program_event_status_update import (
    CREATED,
    to_action_program_event,
    to_create_program_event,
)
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.sandbox.cpmcs_sim import PROGRAM_EVENT_LIFECYCLE_PATH, PROGRAM_EVENT_PATH
from derms_bridge.sandbox.run import SANDBOX_CALLERS, SandboxPorts, sandbox_settings
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread, free_port
from derms_bridge.schemas.program_event_status import StageStatusMessage
from derms_bridge.store.database import migrate
from harness import (
    BenchmarkFailure,
    positive,
    positive_float,
    report_or_fail,
    table,
    verdict,
)
from processes import CPMCS_SIMULATOR, LOOKUPS_DIR, simulator_process, spawned_server

HUB_ROUTE = "/stage-status-to-dacs"
#: Set, the hub processes started export their traces to it (trace_cost.py, --trace-export).
TRACE_EXPORT_VARIABLE = "DERMS_BRIDGE_TRACING__ENDPOINT"

TARGET_FLOWS_PER_SECOND = 300.0
TARGET_ADDED_P50_MS = 5.0
TARGET_ADDED_P99_MS = 20.0

WARM_UP_FLOWS = 200
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=60.0, sock_connect=10.0)


@dataclass(frozen=True)
class Request:
    """One flow, as the hub receives it and as the simulator would receive its call."""

    message: dict[str, Any]
    expected_value: str
    cpmcs_path: str
    cpmcs_body: dict[str, Any]


def stage_status(event_id: str, status: str, message_id: str) -> dict[str, Any]:
    """One stage status as DERMS sends it."""
    return {
        "messageId": message_id,
        "eventId": event_id,
        "stageId": "S-1",
        "programId": "BYOT",
        "eventType": "ECONOMIC",
        "stageStatus": status,
        "startDateTimeISO": "2026-12-01T14:00:00.000Z",
        "endDateTimeISO": "2026-12-01T18:00:00.000Z",
    }


def request(event_id: str, status: str, lookups: Lookups) -> Request:
    """The hub's message and, through the flow's own transformation, the call it makes."""
    message = stage_status(event_id, status, f"M-{event_id}-{status}")
    parsed = StageStatusMessage.model_validate(message)
    if parsed.is_scheduled:
        body = to_create_program_event(parsed, lookups).model_dump(mode="json", exclude_none=True)
        return Request(message, CREATED, PROGRAM_EVENT_PATH, body)
    action = to_action_program_event(parsed, lookups)
    return Request(
        message,
        action.action,
        PROGRAM_EVENT_LIFECYCLE_PATH,
        action.model_dump(mode="json", exclude_none=True),
    )


def stage_pairs(prefix: str, flows: int, lookups: Lookups) -> list[list[Request]]:
    """`flows` requests as stages, each SCHEDULED then IN_PROGRESS (the last maybe alone)."""
    pairs = []
    for number in range((flows + 1) // 2):
        event_id = f"{prefix}-{number:06d}"
        pair = [request(event_id, "SCHEDULED", lookups)]
        if 2 * number + 1 < flows:
            pair.append(request(event_id, "IN_PROGRESS", lookups))
        pairs.append(pair)
    return pairs


def paced_requests(
    prefix: str, count: int, in_progress: Iterator[str], lookups: Lookups
) -> list[Request]:
    """Alternately a new SCHEDULED stage and a COMPLETED for the next stage of `in_progress`:
    each stage is completed once, as CPMCS takes no action on a completed program event."""
    made = []
    for number in range(count):
        if number % 2 == 0:
            made.append(request(f"{prefix}-{number:06d}", "SCHEDULED", lookups))
            continue
        event_id = next(in_progress, None)
        if event_id is None:
            raise BenchmarkFailure(
                "phase 2 completes more stages than phase 1 left in progress: "
                "raise --flows, or lower --rate or --seconds"
            )
        made.append(request(event_id, "COMPLETED", lookups))
    return made


Sender = Callable[[aiohttp.ClientSession, Request], Awaitable[None]]


async def send_to_hub(session: aiohttp.ClientSession, item: Request) -> None:
    async with session.post(HUB_ROUTE, json=item.message) as response:
        status, text = response.status, await response.text()
        instance_id = response.headers.get("X-Instance-Id")
    if status != 200:
        raise BenchmarkFailure(f"the hub answered HTTP {status}: {text[:300]}")
    if not instance_id:
        raise BenchmarkFailure("the hub's answer has no X-Instance-Id: the run was not tracked")
    expected = ("SUCCESS", [(item.message["messageId"], item.expected_value, "SUCCESS")])
    try:
        ack = json.loads(text)["MsgAck"]
        answered = (
            ack["ackType"],
            [(r["id"], r["value"], r["responseCode"]) for r in ack["responses"]["response"]],
        )
    except (ValueError, KeyError, TypeError):
        raise BenchmarkFailure(f"the hub answered a body that is no MsgAck: {text[:300]}") from None
    if answered != expected:
        raise BenchmarkFailure(f"the hub answered {answered}, not {expected}")


async def send_direct(session: aiohttp.ClientSession, item: Request) -> None:
    async with session.post(item.cpmcs_path, json=item.cpmcs_body) as response:
        status, text = response.status, await response.text()
    if status != 200:
        raise BenchmarkFailure(f"the simulator answered {item.cpmcs_path} {status}: {text[:300]}")


def client(base_url: str, in_flight: int, headers: dict[str, str]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url,
        connector=aiohttp.TCPConnector(limit=in_flight),
        timeout=CLIENT_TIMEOUT,
        headers=headers,
    )


async def run_bounded(
    session: aiohttp.ClientSession, send: Sender, pairs: list[list[Request]], in_flight: int
) -> float:
    """Seconds to send every pair's requests in order, at most `in_flight` at once."""
    queue = iter(pairs)

    async def worker() -> None:
        # One shared iterator: each worker takes the next stage when its last is done.
        for pair in queue:
            for item in pair:
                await send(session, item)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started


@dataclass(frozen=True)
class Paced:
    latencies_ms: list[float]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


async def run_paced(
    session: aiohttp.ClientSession, send: Sender, items: list[Request], rate: float
) -> Paced:
    """Open loop: request i is due at start + i/rate whatever the earlier ones are doing."""
    latencies = [0.0] * len(items)
    loop = asyncio.get_running_loop()
    started = loop.time() + 0.05

    async def one(index: int, item: Request) -> None:
        due = started + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        await send(session, item)
        latencies[index] = (loop.time() - due) * 1000

    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    return Paced(latencies, loop.time() - started)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


@dataclass(frozen=True)
class Result:
    flows: int
    in_flight: int
    hub_seconds: float
    direct_seconds: float
    rate: float
    hub_paced: Paced
    direct_paced: Paced
    hub_layout: str

    @property
    def hub_throughput(self) -> float:
        return self.flows / self.hub_seconds

    @property
    def direct_throughput(self) -> float:
        return self.flows / self.direct_seconds

    def added_ms(self, fraction: float) -> float:
        return percentile(self.hub_paced.latencies_ms, fraction) - percentile(
            self.direct_paced.latencies_ms, fraction
        )


async def program_events(cpmcs_url: str) -> dict[str, str]:
    """eventExternalIdentifier -> status, for every program event the simulator holds."""
    async with (
        aiohttp.ClientSession(cpmcs_url) as admin,
        admin.get("/_sim/state/program-events") as response,
    ):
        events: list[dict[str, Any]] = await response.json()
    return {event["eventExternalIdentifier"]: event["status"] for event in events}


async def check_events(cpmcs_url: str, requests: list[Request], arm: str) -> None:
    """The simulator holds each stage in the status of the last request sent for it."""
    held = await program_events(cpmcs_url)
    expected: dict[str, str] = {}
    for item in requests:
        body = item.cpmcs_body
        expected[body["eventExternalIdentifier"]] = body.get("action", "X1SD")
    wrong = [(e, held.get(e), s) for e, s in expected.items() if held.get(e) != s]
    if wrong:
        raise BenchmarkFailure(
            f"after the {arm} run, {len(wrong)} program events are not as sent "
            f"(event, held, expected): {wrong[:3]}"
        )


async def measure(
    hub_url: str, cpmcs_url: str, flows: int, in_flight: int, rate: float, seconds: float
) -> tuple[float, float, Paced, Paced]:
    lookups = load_lookups(LOOKUPS_DIR)
    user, password = SANDBOX_CALLERS["derms"]
    hub = client(hub_url, in_flight, {"Authorization": aiohttp.encode_basic_auth(user, password)})
    direct = client(cpmcs_url, in_flight, {})
    async with hub, direct:
        arms: list[tuple[str, aiohttp.ClientSession, Sender]] = [
            ("direct", direct, send_direct),
            ("hub", hub, send_to_hub),
        ]
        # Each arm works on stages of its own (prefix), so one simulator serves both.
        for arm, session, send in arms:
            await run_bounded(session, send, stage_pairs(f"WU-{arm}", WARM_UP_FLOWS, lookups), 8)

        throughput: dict[str, float] = {}
        pairs_of: dict[str, list[list[Request]]] = {}
        for arm, session, send in arms:
            pairs_of[arm] = stage_pairs(f"T-{arm}", flows, lookups)
            throughput[arm] = await run_bounded(session, send, pairs_of[arm], in_flight)
            await check_events(cpmcs_url, [r for p in pairs_of[arm] for r in p], arm)

        paced: dict[str, Paced] = {}
        count = max(2, round(rate * seconds))
        for arm, session, send in arms:
            in_progress = iter([p[0].message["eventId"] for p in pairs_of[arm] if len(p) == 2])
            warm = paced_requests(f"WL-{arm}", max(2, round(rate)), in_progress, lookups)
            await run_paced(session, send, warm, rate)
            items = paced_requests(f"L-{arm}", count, in_progress, lookups)
            paced[arm] = await run_paced(session, send, items, rate)
            await check_events(cpmcs_url, items, arm)
    return throughput["hub"], throughput["direct"], paced["hub"], paced["direct"]


def hub_server(cpmcs_url: str, database_url: str) -> ServerThread:
    cpmcs_port = int(cpmcs_url.rsplit(":", 1)[1])
    ports = SandboxPorts(hub=free_port(), cpmcs=cpmcs_port, derms=free_port(), smtp=free_port())
    settings = sandbox_settings(ports, database_url, LOOKUPS_DIR)
    app = create_app(build_hub(settings, load_lookups(LOOKUPS_DIR)))
    return ServerThread(app, port=settings.server.port, name="hub")


def serve_hub(cpmcs_url: str, database_url: str, port_to: Connection, stop: Event) -> None:
    """The hub's ServerThread, in the process `spawned_server` starts."""
    with hub_server(cpmcs_url, database_url) as hub:
        port_to.send(hub.port)
        stop.wait()


@contextmanager
def hub_process(cpmcs_url: str, database_url: str) -> Iterator[str]:
    """The hub in a process of its own; its base URL."""
    with spawned_server(partial(serve_hub, cpmcs_url, database_url), "the hub") as port:
        yield f"http://{LOOPBACK}:{port}"


@contextmanager
def hub_in_this_process(cpmcs_url: str, database_url: str) -> Iterator[str]:
    with hub_server(cpmcs_url, database_url) as hub:
        yield hub.url


def run(flows: int, in_flight: int, rate: float, seconds: float, *, hub_in_process: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="derms-bridge-bench-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'hub.db'}"
        migrate(database_url)
        serve = hub_in_this_process if hub_in_process else hub_process
        with (
            simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator") as cpmcs_url,
            serve(cpmcs_url, database_url) as hub_url,
        ):
            hub_seconds, direct_seconds, hub_paced, direct_paced = asyncio.run(
                measure(hub_url, cpmcs_url, flows, in_flight, rate, seconds)
            )
    layout = (
        "in this process (shares the load generator's GIL)"
        if hub_in_process
        else ("a process of its own")
    )
    return Result(
        flows=flows,
        in_flight=in_flight,
        hub_seconds=hub_seconds,
        direct_seconds=direct_seconds,
        rate=rate,
        hub_paced=hub_paced,
        direct_paced=direct_paced,
        hub_layout=layout,
    )


def report(result: Result) -> str:
    hub, direct = result.hub_paced.latencies_ms, result.direct_paced.latencies_ms
    added_p50, added_p99 = result.added_ms(0.50), result.added_ms(0.99)
    rows = [
        ("hub", result.hub_layout),
        ("CPMCS simulator", "a process of its own"),
        ("", ""),
        ("phase 1: throughput", ""),
        ("flows", f"{result.flows:,} (SCHEDULED then IN_PROGRESS per stage)"),
        ("in flight", str(result.in_flight)),
        (
            "hub",
            f"{result.hub_throughput:,.0f} flows/s ({result.hub_seconds:.3f} s)",
        ),
        (
            "direct",
            f"{result.direct_throughput:,.0f} calls/s ({result.direct_seconds:.3f} s)",
        ),
        ("ratio (hub/direct)", f"{result.hub_throughput / result.direct_throughput:.3f}"),
        ("", ""),
        (f"phase 2: latency at {result.rate:g} req/s", ""),
        (
            "requests",
            f"{len(hub):,} each (achieved {result.hub_paced.rate:.1f} and "
            f"{result.direct_paced.rate:.1f} req/s)",
        ),
        ("hub p50 / p99", f"{percentile(hub, 0.5):.2f} ms / {percentile(hub, 0.99):.2f} ms"),
        (
            "direct p50 / p99",
            f"{percentile(direct, 0.5):.2f} ms / {percentile(direct, 0.99):.2f} ms",
        ),
        ("added by hub p50 / p99", f"{added_p50:.2f} ms / {added_p99:.2f} ms"),
        ("", ""),
        ("targets", ""),
        (
            f"hub >= {TARGET_FLOWS_PER_SECOND:g} flows/s",
            verdict(result.hub_throughput >= TARGET_FLOWS_PER_SECOND),
        ),
        (f"added p50 <= {TARGET_ADDED_P50_MS:g} ms", verdict(added_p50 <= TARGET_ADDED_P50_MS)),
        (f"added p99 <= {TARGET_ADDED_P99_MS:g} ms", verdict(added_p99 <= TARGET_ADDED_P99_MS)),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Program Event Status Updates through the hub against the same CPMCS "
        "calls straight to the simulator: throughput, then latency under a paced load."
    )
    parser.add_argument("--flows", type=positive, default=2000, help="phase 1 flows (default 2000)")
    parser.add_argument(
        "--in-flight", type=positive, default=32, help="phase 1 requests in flight (default 32)"
    )
    parser.add_argument(
        "--rate", type=positive_float, default=100.0, help="phase 2 requests/s (default 100)"
    )
    parser.add_argument(
        "--seconds", type=positive_float, default=5.0, help="phase 2 duration (default 5)"
    )
    parser.add_argument(
        "--trace-export",
        metavar="URL",
        help="the hub exports its traces to this OTLP/HTTP URL (trace_cost.py compares)",
    )
    parser.add_argument(
        "--hub-in-process",
        action="store_true",
        help="serve the hub in this process, beside the load generator, instead of its own",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trace_export:
        os.environ[TRACE_EXPORT_VARIABLE] = args.trace_export
    return report_or_fail(
        "sync_flows",
        lambda: run(
            args.flows,
            args.in_flight,
            args.rate,
            args.seconds,
            hub_in_process=args.hub_in_process,
        ),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
