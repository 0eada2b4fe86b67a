"""Benchmark: tracked request/response flows through the hub, against the same calls sent
straight to the simulators, in one run (issue 15).

Two workloads, each measured through the hub and directly, one after the other:

* ``flow 6``: Program Event Status Updates (``POST /stage-status-to-dacs``), each stage
  SCHEDULED then IN_PROGRESS; directly, the createProgramEvent or actionProgramEvent body
  the hub would send, to the CPMCS simulator.
* ``mix``: flows 6, 1, 2, 9 and 10 in turn, in every six flows a stage's two status updates
  (flow 6), an Enrollment Request of one record (flow 1, to CPMCS's enrollProgram), an
  Enrollment Sync (flow 2, to DERMS's /enroll), a Customer Event Opt Out (flow 9) and a
  Customer Unavailability ADD (flow 10, both to DERMS's /dacs-opt-out); directly, the
  bodies the hub would send, to the simulator each goes to.

Every body is built by the flows' own transformations over the repository's lookups. The
hub is ``derms-bridge serve`` from a settings file in a temporary directory: one process on
a SQLite file there, or with ``--postgres`` ``--processes`` processes on one port against a
database this script creates on that server and drops after. The simulators are uvicorn
processes of their own; this process is the load generator (aiohttp: one httpx client with
32 in flight makes about 250 requests per second here, so it would measure itself).

Phase 1, throughput: N flows of the workload (default 2,000), a bounded number in flight
(default 32); flows (or calls) per second. Phase 2, latency: an open-loop load paced at R
requests per second (default 300) for D seconds (default 5), each request timed from the
moment it was due until its answer was read; the latency the hub adds is its percentile
less the direct one. A short warm-up of both arms precedes each phase and is not counted.

Targets (issue 15; 2-core machine, tracking on): the hub makes at least 1,000 flows per
second, and adds at most 3 ms at p50 and 10 ms at p99 at 300 requests per second. Every
answer is checked (each reply, and the program events the CPMCS simulator holds); nothing
is asserted on time: the exit code is 1 only when an answer is wrong, 0 otherwise, PASS or
MISS.

Run it from the repository root:

    .venv/bin/python bench/sync_flows.py [--flows N] [--in-flight C] [--rate R]
        [--seconds D] [--workload flow6|mix|both]
        [--postgres postgresql://USER@HOST:PORT/DB --processes P] [--trace-export URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psycopg
from pydantic import BaseModel

from derms_bridge.flows import customer_unavailability, enrollment_sync
from derms_bridge.flows.customer_event_opt_out import to_derms_opt_out
from derms_bridge.flows.enrollment_request import to_enroll_program
from derms_bridge.flows.program_event_status_update import (
    CREATED,
    to_action_program_event,
    to_create_program_event,
)
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.sandbox.cpmcs_sim import (
    ENROLL_PATH,
    PROGRAM_EVENT_LIFECYCLE_PATH,
    PROGRAM_EVENT_PATH,
)
from derms_bridge.sandbox.servers import free_port
from derms_bridge.schemas.derms import EnrollmentRequest
from derms_bridge.schemas.enrollment_sync import EnrollmentSyncMessage
from derms_bridge.schemas.opt_out import CustomerUnavailabilityMessage, EventOptOutMessage
from derms_bridge.schemas.program_event_status import StageStatusMessage
from harness import (
    BenchmarkFailure,
    positive,
    positive_float,
    report_or_fail,
    table,
    verdict,
)
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
    # tests/payloads.py has the messages as DERMS and CPMCS send them.
    sys.path.insert(0, str(REPO))

from tests import payloads  # noqa: E402

TARGET_FLOWS_PER_SECOND = 1000.0
TARGET_ADDED_P50_MS = 3.0
TARGET_ADDED_P99_MS = 10.0

WARM_UP_FLOWS = 300
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=60.0, sock_connect=10.0)
IDLE_SECONDS = 4.0

DERMS_CALLER = BenchCaller("derms", "derms", "derms-bench")
CPMCS_CALLER = BenchCaller("cpmcs", "cpmcs", "cpmcs-bench")
CALLERS = {caller.role: caller for caller in (DERMS_CALLER, CPMCS_CALLER)}

#: Set, the hub processes started export their traces to it (trace_cost.py, --trace-export).
TRACE_EXPORT_VARIABLE = "DERMS_BRIDGE_TRACING__ENDPOINT"

Workload = Literal["flow 6", "mix"]
Target = Literal["cpmcs", "derms"]


@dataclass(frozen=True)
class Flow:
    """One tracked flow: the message the hub receives and the answer it must give, and the
    one call the hub makes for it, as the target receives it."""

    number: int
    route: str
    caller: str
    message: dict[str, Any]
    expected_reply: Any
    target: Target
    target_path: str
    target_body: dict[str, Any]


def stage_status_message(event_id: str, status: str) -> dict[str, Any]:
    """One stage status as DERMS sends it."""
    return {
        "messageId": f"M-{event_id}-{status}",
        "eventId": event_id,
        "stageId": "S-1",
        "programId": "BYOT",
        "eventType": "ECONOMIC",
        "stageStatus": status,
        "startDateTimeISO": "2026-12-01T14:00:00.000Z",
        "endDateTimeISO": "2026-12-01T18:00:00.000Z",
    }


def stage_status(event_id: str, status: str, lookups: Lookups) -> Flow:
    """Flow 6: a stage status, and the createProgramEvent or actionProgramEvent it becomes."""
    message = stage_status_message(event_id, status)
    parsed = StageStatusMessage.model_validate(message)
    if parsed.is_scheduled:
        path, value = PROGRAM_EVENT_PATH, CREATED
        body = to_create_program_event(parsed, lookups).model_dump(mode="json", exclude_none=True)
    else:
        action = to_action_program_event(parsed, lookups)
        path, value = PROGRAM_EVENT_LIFECYCLE_PATH, action.action
        body = action.model_dump(mode="json", exclude_none=True)
    reply = ("SUCCESS", [(message["messageId"], value, "SUCCESS")])
    return Flow(6, "/stage-status-to-dacs", "derms", message, reply, "cpmcs", path, body)


def enrollment(message_id: str, lookups: Lookups) -> Flow:
    """Flow 1: a batch of one Enrollment Request."""
    record = payloads.enrollment_request(message_id)
    body = to_enroll_program(EnrollmentRequest.model_validate(record), lookups)
    reply = ("SUCCESS", [(message_id, None, "SUCCESS")])
    return Flow(
        1,
        "/enroll-to-dacs",
        "derms",
        payloads.enrollment_message(record),
        reply,
        "cpmcs",
        ENROLL_PATH,
        body.model_dump(mode="json", exclude_none=True),
    )


def from_cpmcs(
    number: int,
    message_name: str,
    message: dict[str, Any],
    external_id: str,
    derms_path: str,
    body: BaseModel,
) -> Flow:
    """A flow CPMCS starts (`/cpmcs/outbound/<message_name>`) whose one call goes to DERMS;
    the hub answers CPMCS with the message's external id."""
    return Flow(
        number,
        f"/cpmcs/outbound/{message_name}",
        "cpmcs",
        message,
        {"responseDetails": {"externalId": external_id}},
        "derms",
        derms_path,
        body.model_dump(mode="json", exclude_none=True),
    )


def enrollment_sync_flow(sync_request_id: str) -> Flow:
    """Flow 2: CPMCS's X1-NMSDASMSG (its syncRequestId 14 characters at most)."""
    message = payloads.enrollment_sync_message(sync_request_id)
    body = enrollment_sync.to_derms_enroll(EnrollmentSyncMessage.model_validate(message))
    return from_cpmcs(2, "X1-NMSDASMSG", message, sync_request_id, "/enroll", body)


def event_opt_out(message_id: str) -> Flow:
    """Flow 9: CPMCS's X1-EPOPTOMSG."""
    message = payloads.event_opt_out_message(message_id)
    body = to_derms_opt_out(EventOptOutMessage.model_validate(message))
    return from_cpmcs(9, "X1-EPOPTOMSG", message, message_id, "/dacs-opt-out", body)


def unavailability(message_id: str) -> Flow:
    """Flow 10: CPMCS's X1-CUSTUNAVL, an ADD (the only action that goes on)."""
    message = payloads.customer_unavailability_message(message_id)
    parsed = CustomerUnavailabilityMessage.model_validate(message)
    body = customer_unavailability.to_derms_opt_out(parsed)
    return from_cpmcs(10, "X1-CUSTUNAVL", message, message_id, "/dacs-opt-out", body)


def mixed_in(key: str, lookups: Lookups) -> list[Flow]:
    """What the mix sends beside a stage's status updates: flows 1, 2, 9 and 10."""
    return [
        enrollment(f"ER-{key}", lookups),
        enrollment_sync_flow(key[-14:]),
        event_opt_out(f"OPT-{key}"),
        unavailability(f"UA-{key}"),
    ]


def chains(workload: Workload, prefix: str, flows: int, lookups: Lookups) -> list[list[Flow]]:
    """`flows` flows as chains, each sent in order (a stage's SCHEDULED before its
    IN_PROGRESS), the chains concurrently."""
    made: list[list[Flow]] = []
    count, number = 0, 0
    while count < flows:
        key = f"{prefix}-{number:06d}"
        number += 1
        stage = [stage_status(key, "SCHEDULED", lookups)]
        if count + 1 < flows:
            stage.append(stage_status(key, "IN_PROGRESS", lookups))
        made.append(stage)
        count += len(stage)
        if workload == "mix":
            others = mixed_in(key, lookups)[: flows - count]
            made += [[flow] for flow in others]
            count += len(others)
    return made


def paced_flows(
    workload: Workload, prefix: str, count: int, stages: Iterator[str], lookups: Lookups
) -> list[Flow]:
    """Flow 6: alternately a new SCHEDULED stage and a COMPLETED for the next stage of phase
    1, each completed once (CPMCS takes no action on a completed program event); the mix:
    those two and flows 1, 2, 9 and 10 in turn."""
    made: list[Flow] = []
    while len(made) < count:
        key = f"{prefix}-{len(made):06d}"
        made.append(stage_status(key, "SCHEDULED", lookups))
        stage = next(stages, None)
        if stage is None:
            raise BenchmarkFailure(
                "phase 2 completes more stages than phase 1 left open: raise --flows, or "
                "lower --rate or --seconds"
            )
        made.append(stage_status(stage, "COMPLETED", lookups))
        if workload == "mix":
            made += mixed_in(key, lookups)
    return made[:count]


def reply_of(body: Any) -> Any:
    """What the benchmark compares of a reply: a MsgAck's type and responses, or a reply to
    CPMCS as it is."""
    if "MsgAck" not in body:
        return body
    ack = body["MsgAck"]
    return (
        ack["ackType"],
        [(r["id"], r["value"], r["responseCode"]) for r in ack["responses"]["response"]],
    )


def as_expected(flow: Flow, answered: Any) -> bool:
    if flow.number != 1:
        return bool(answered == flow.expected_reply)
    # The enrollment's value is the status CPMCS gave it, through the lookup: any.
    ack_type, responses = answered
    anything_as_value = (ack_type, [(i, None, code) for i, _value, code in responses])
    return bool(anything_as_value == flow.expected_reply)


class Arm:
    """Sends a flow through the hub, or its call straight to its target."""

    def __init__(self, name: str, send: Callable[[Flow], Awaitable[None]]) -> None:
        self.name = name
        self.send = send


def session(base_url: str, in_flight: int) -> aiohttp.ClientSession:
    # Idle connections closed before the servers' own 5 s (uvicorn's) close them: a request
    # sent on one the server was closing failed ("Can not write request body").
    return aiohttp.ClientSession(
        base_url,
        connector=aiohttp.TCPConnector(limit=in_flight, keepalive_timeout=IDLE_SECONDS),
        timeout=CLIENT_TIMEOUT,
    )


def hub_arm(hub: aiohttp.ClientSession) -> Arm:
    authorization = {
        role: aiohttp.encode_basic_auth(caller.username, caller.password)
        for role, caller in CALLERS.items()
    }

    async def send(flow: Flow) -> None:
        async with hub.post(
            flow.route, json=flow.message, headers={"Authorization": authorization[flow.caller]}
        ) as response:
            status, text = response.status, await response.text()
            instance_id = response.headers.get("X-Instance-Id")
        if status != 200:
            raise BenchmarkFailure(f"the hub answered flow {flow.number} HTTP {status}: {text}")
        if not instance_id:
            raise BenchmarkFailure(f"the hub's answer to flow {flow.number} is not tracked")
        try:
            answered = reply_of(json.loads(text))
        except (ValueError, KeyError, TypeError):
            raise BenchmarkFailure(
                f"flow {flow.number}: a reply the hub never gives: {text}"
            ) from None
        if not as_expected(flow, answered):
            raise BenchmarkFailure(
                f"the hub answered flow {flow.number} {answered}, not {flow.expected_reply}"
            )

    return Arm("hub", send)


def direct_arm(targets: dict[Target, aiohttp.ClientSession]) -> Arm:
    async def send(flow: Flow) -> None:
        async with targets[flow.target].post(flow.target_path, json=flow.target_body) as answer:
            status, text = answer.status, await answer.text()
        if status != 200:
            raise BenchmarkFailure(f"{flow.target} answered {flow.target_path} {status}: {text}")
        if flow.target == "derms" and reply_of(json.loads(text))[0] != "SUCCESS":
            raise BenchmarkFailure(f"DERMS answered {flow.target_path} {text}")

    return Arm("direct", send)


async def run_bounded(arm: Arm, work: list[list[Flow]], in_flight: int) -> float:
    """Seconds to send every chain's flows in order, at most `in_flight` at once."""
    queue = iter(work)

    async def worker() -> None:
        # One shared iterator: each worker takes the next chain when its last is done.
        for chain in queue:
            for flow in chain:
                await arm.send(flow)

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


async def run_paced(arm: Arm, flows: list[Flow], rate: float) -> Paced:
    """Open loop: flow i is due at start + i/rate whatever the earlier ones are doing."""
    latencies = [0.0] * len(flows)
    loop = asyncio.get_running_loop()
    started = loop.time() + 0.05

    async def one(index: int, flow: Flow) -> None:
        due = started + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        await arm.send(flow)
        latencies[index] = (loop.time() - due) * 1000

    await asyncio.gather(*(one(i, flow) for i, flow in enumerate(flows)))
    return Paced(latencies, loop.time() - started)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


async def check_events(cpmcs_url: str, flows: list[Flow], arm: str) -> None:
    """The CPMCS simulator holds each stage in the status of the last update sent for it."""
    async with (
        aiohttp.ClientSession(cpmcs_url) as admin,
        admin.get("/_sim/state/program-events") as response,
    ):
        events: list[dict[str, Any]] = await response.json()
    held = {event["eventExternalIdentifier"]: event["status"] for event in events}
    expected: dict[str, str] = {}
    for flow in flows:
        if flow.number == 6:
            expected[flow.target_body["eventExternalIdentifier"]] = flow.target_body.get(
                "action", "X1SD"
            )
    wrong = [(e, held.get(e), s) for e, s in expected.items() if held.get(e) != s]
    if wrong:
        raise BenchmarkFailure(
            f"after the {arm} run, {len(wrong)} program events are not as sent "
            f"(event, held, expected): {wrong[:3]}"
        )


@dataclass(frozen=True)
class Measured:
    """One workload, through the hub and directly."""

    workload: Workload
    flows: int
    seconds: dict[str, float]
    hub_cpu_seconds: float
    paced: dict[str, Paced]

    def throughput(self, arm: str) -> float:
        return self.flows / self.seconds[arm]

    @property
    def hub_cpu_ms_per_flow(self) -> float:
        """What the hub's processes spent of CPU in phase 1, per flow: unlike its rate, not
        much moved by what else the machine runs."""
        return self.hub_cpu_seconds * 1000 / self.flows

    def added_ms(self, fraction: float) -> float:
        return percentile(self.paced["hub"].latencies_ms, fraction) - percentile(
            self.paced["direct"].latencies_ms, fraction
        )


async def measure_workload(
    workload: Workload,
    arms: list[Arm],
    cpmcs_url: str,
    lookups: Lookups,
    flows: int,
    in_flight: int,
    rate: float,
    seconds: float,
    hub_cpu: Callable[[], float],
) -> Measured:
    tag = "F6" if workload == "flow 6" else "MX"
    # Each arm works on messages of its own (prefix), so one simulator serves both.
    for arm in arms:
        await run_bounded(arm, chains(workload, f"W{tag}{arm.name}", WARM_UP_FLOWS, lookups), 8)
    taken: dict[str, float] = {}
    stages: dict[str, list[str]] = {}
    hub_cpu_seconds = 0.0
    for arm in arms:
        work = chains(workload, f"T{tag}{arm.name}", flows, lookups)
        cpu_before = hub_cpu()
        taken[arm.name] = await run_bounded(arm, work, in_flight)
        if arm.name == "hub":
            hub_cpu_seconds = hub_cpu() - cpu_before
        sent = [flow for chain in work for flow in chain]
        await check_events(cpmcs_url, sent, arm.name)
        stages[arm.name] = list(dict.fromkeys(f.message["eventId"] for f in sent if f.number == 6))
    paced: dict[str, Paced] = {}
    count = max(2, round(rate * seconds))
    for arm in arms:
        open_stages = iter(stages[arm.name])
        warm = paced_flows(workload, f"V{tag}{arm.name}", round(rate), open_stages, lookups)
        await run_paced(arm, warm, rate)
        items = paced_flows(workload, f"L{tag}{arm.name}", count, open_stages, lookups)
        paced[arm.name] = await run_paced(arm, items, rate)
        await check_events(cpmcs_url, items, arm.name)
    return Measured(workload, flows, taken, hub_cpu_seconds, paced)


async def measure(
    hub_process: HubProcess,
    cpmcs_url: str,
    derms_url: str,
    workloads: list[Workload],
    flows: int,
    in_flight: int,
    rate: float,
    seconds: float,
) -> list[Measured]:
    lookups = load_lookups(LOOKUPS_DIR)
    hub = session(hub_process.url, in_flight)
    cpmcs, derms = session(cpmcs_url, in_flight), session(derms_url, in_flight)
    async with hub, cpmcs, derms:
        arms = [direct_arm({"cpmcs": cpmcs, "derms": derms}), hub_arm(hub)]
        return [
            await measure_workload(
                workload,
                arms,
                cpmcs_url,
                lookups,
                flows,
                in_flight,
                rate,
                seconds,
                hub_process.cpu_seconds_with_children,
            )
            for workload in workloads
        ]


@contextmanager
def bench_database(postgres: str | None) -> Iterator[str | None]:
    """None (a SQLite file in the hub's directory), or a database of the run's own on the
    PostgreSQL server `postgres` names, dropped after."""
    if postgres is None:
        yield None
        return
    name = f"derms_bridge_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        server = postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def flows_hub(
    cpmcs_url: str, derms_url: str, database_url: str | None = None, processes: int = 1
) -> AbstractContextManager[HubProcess]:
    """A hub that serves this benchmark's flows from both callers, in front of the
    simulators."""
    return hub_process(
        cpmcs_url=cpmcs_url,
        derms_url=derms_url,
        smtp_port=free_port(),
        caller=DERMS_CALLER,
        other_callers=[CPMCS_CALLER],
        flow_settings={},
        database_url=database_url,
        processes=processes,
    )


@dataclass(frozen=True)
class Run:
    database: str
    processes: int
    load_before: float
    load_after: float
    results: list[Measured]
    rate: float
    in_flight: int


def run(
    workloads: list[Workload],
    flows: int,
    in_flight: int,
    rate: float,
    seconds: float,
    postgres: str | None,
    processes: int,
) -> Run:
    load_before = os.getloadavg()[0]
    with (
        simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator") as cpmcs_url,
        simulator_process(DERMS_SIMULATOR, "the DERMS simulator") as derms_url,
        bench_database(postgres) as database_url,
        flows_hub(cpmcs_url, derms_url, database_url, processes) as hub,
    ):
        results = asyncio.run(
            measure(hub, cpmcs_url, derms_url, workloads, flows, in_flight, rate, seconds)
        )
    return Run(
        database="PostgreSQL" if postgres else "SQLite",
        processes=processes,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        results=results,
        rate=rate,
        in_flight=in_flight,
    )


def report(run: Run) -> str:
    processes = "one process" if run.processes == 1 else f"{run.processes} processes, one port"
    rows = [
        ("hub", f"derms-bridge serve, {processes}, {run.database}"),
        ("simulators", "CPMCS and DERMS, processes of their own"),
        ("load average", f"{run.load_before:.1f} before, {run.load_after:.1f} after (2 cores)"),
    ]
    targets: list[tuple[str, str]] = []
    for result in run.results:
        hub, direct = result.paced["hub"].latencies_ms, result.paced["direct"].latencies_ms
        added_p50, added_p99 = result.added_ms(0.50), result.added_ms(0.99)
        what = (
            "SCHEDULED then IN_PROGRESS per stage"
            if result.workload == "flow 6"
            else "flows 6, 6, 1, 2, 9, 10 in turn"
        )
        rows += [
            ("", ""),
            (f"{result.workload}: throughput", ""),
            ("flows", f"{result.flows:,} ({what}), {run.in_flight} in flight"),
            (
                "hub",
                f"{result.throughput('hub'):,.0f} flows/s ({result.seconds['hub']:.3f} s)",
            ),
            (
                "direct",
                f"{result.throughput('direct'):,.0f} calls/s ({result.seconds['direct']:.3f} s)",
            ),
            ("ratio (hub/direct)", f"{result.throughput('hub') / result.throughput('direct'):.3f}"),
            ("hub CPU per flow", f"{result.hub_cpu_ms_per_flow:.2f} ms (its processes, phase 1)"),
            (f"{result.workload}: latency at {run.rate:g} req/s", ""),
            (
                "requests",
                f"{len(hub):,} each (achieved {result.paced['hub'].rate:.1f} and "
                f"{result.paced['direct'].rate:.1f} req/s)",
            ),
            ("hub p50 / p99", f"{percentile(hub, 0.5):.2f} ms / {percentile(hub, 0.99):.2f} ms"),
            (
                "direct p50 / p99",
                f"{percentile(direct, 0.5):.2f} ms / {percentile(direct, 0.99):.2f} ms",
            ),
            ("added by hub p50 / p99", f"{added_p50:.2f} ms / {added_p99:.2f} ms"),
        ]
        targets += [
            (
                f"{result.workload}: hub >= {TARGET_FLOWS_PER_SECOND:,.0f} flows/s",
                verdict(result.throughput("hub") >= TARGET_FLOWS_PER_SECOND),
            ),
            (
                f"{result.workload}: added p50 <= {TARGET_ADDED_P50_MS:g} ms",
                verdict(added_p50 <= TARGET_ADDED_P50_MS),
            ),
            (
                f"{result.workload}: added p99 <= {TARGET_ADDED_P99_MS:g} ms",
                verdict(added_p99 <= TARGET_ADDED_P99_MS),
            ),
        ]
    return table([*rows, ("", ""), ("targets", ""), *targets])


WORKLOADS: dict[str, list[Workload]] = {
    "flow6": ["flow 6"],
    "mix": ["mix"],
    "both": ["flow 6", "mix"],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tracked flows through the hub against the same calls straight to the "
        "simulators: throughput, then latency under a paced load."
    )
    parser.add_argument("--flows", type=positive, default=2000, help="phase 1 flows (default 2000)")
    parser.add_argument(
        "--in-flight", type=positive, default=32, help="phase 1 requests in flight (default 32)"
    )
    parser.add_argument(
        "--rate", type=positive_float, default=300.0, help="phase 2 requests/s (default 300)"
    )
    parser.add_argument(
        "--seconds", type=positive_float, default=5.0, help="phase 2 duration (default 5)"
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="both",
        help="flow6, mix (flows 6, 1, 2, 9, 10) or both (default)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server (postgresql://USER@HOST:PORT/DB, a database to connect to "
        "while creating the run's own) instead of SQLite",
    )
    parser.add_argument(
        "--processes",
        type=positive,
        default=1,
        help="hub processes on one port (serve --processes; more than 1 needs --postgres)",
    )
    parser.add_argument(
        "--trace-export",
        metavar="URL",
        help="the hub exports its traces to this OTLP/HTTP endpoint (trace_cost.py)",
    )
    args = parser.parse_args(argv)
    if args.processes > 1 and args.postgres is None:
        parser.error("--processes above 1 needs --postgres: SQLite lets one writer in at a time")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trace_export:
        os.environ[TRACE_EXPORT_VARIABLE] = args.trace_export
    return report_or_fail(
        "sync_flows",
        lambda: run(
            WORKLOADS[args.workload],
            args.flows,
            args.in_flight,
            args.rate,
            args.seconds,
            args.postgres,
            args.processes,
        ),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
