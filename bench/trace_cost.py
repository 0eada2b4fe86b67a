"""What exporting traces costs the hub: sync_flows.py's throughput phase with tracing off,
then with spans exported over OTLP/HTTP to a receiver on loopback at each sample ratio
asked for (`tracing.sample_ratio`), in one run, alternating the arms so that the machine's
load falls on all alike.

The receiver is a process of its own that decodes each ExportTraceServiceRequest, as a
collector does, and counts its spans. Target: with export on, at most 5% fewer flows per
second than with it off.

    .venv/bin/python bench/trace_cost.py [--flows N] [--in-flight C] [--rounds R]
        [--ratios R [R ...]]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict
from processes import spawned_server
from sync_flows import TRACE_EXPORT_VARIABLE
from sync_flows import run as run_sync_flows

MAX_SLOWDOWN = 0.05
RUNS_REPEATED = 3
SAMPLE_RATIO_VARIABLE = "DERMS_BRIDGE_TRACING__SAMPLE_RATIO"


class _Spans:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    async def traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        received = sum(
            len(scope.spans) for spans in export.resource_spans for scope in spans.scope_spans
        )
        with self._lock:
            self.count += received
        return Response(
            ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf"
        )

    async def counted(self, _request: Request) -> Response:
        return PlainTextResponse(str(self.count))


def serve_receiver(port_to: Connection, stop: Event) -> None:
    """The OTLP/HTTP receiver, in the process `spawned_server` starts."""
    spans = _Spans()
    app = Starlette(
        routes=[
            Route("/v1/traces", spans.traces, methods=["POST"]),
            Route("/spans", spans.counted),
        ]
    )
    with ServerThread(app, name="otlp-receiver") as server:
        port_to.send(server.port)
        stop.wait()


@contextmanager
def exporting_to(endpoint: str | None, ratio: float | None) -> Iterator[None]:
    """The hub processes started inside export to `endpoint` the share `ratio` of their
    traces (None: tracing off)."""
    wanted = {TRACE_EXPORT_VARIABLE: endpoint, SAMPLE_RATIO_VARIABLE: ratio}
    before = {name: os.environ.pop(name, None) for name in wanted}
    os.environ.update({name: str(value) for name, value in wanted.items() if value is not None})
    try:
        yield
    finally:
        for name, value in before.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


@dataclass(frozen=True)
class Arm:
    """Tracing off (ratio None), or export on at a sample ratio; its runs."""

    ratio: float | None
    rates: list[float]
    #: CPU seconds of the hub's and the simulators' processes, per run.
    cpu: list[float]
    #: The hub's own CPU per flow (ms), per run: what its processes spent in the timed phase.
    hub_cpu: list[float]

    @property
    def name(self) -> str:
        return "tracing off" if self.ratio is None else f"export on, ratio {self.ratio:g}"


@dataclass(frozen=True)
class Result:
    flows: int
    off: Arm
    on: list[Arm]
    spans: int
    repeated: int
    #: The 1-minute load average when the runs started and when they ended.
    load: tuple[float, float]

    def slowdown(self, arm: Arm) -> float:
        return 1 - statistics.median(arm.rates) / statistics.median(self.off.rates)

    def cpu_added(self, arm: Arm) -> float:
        """The hub's CPU per flow with export on over off, less one: what it would lose of
        its flows per second when its CPU is what limits it, on a loaded machine a steadier
        figure than the rates."""
        return statistics.median(arm.hub_cpu) / statistics.median(self.off.hub_cpu) - 1


def spans_received(receiver: str) -> int:
    with urllib.request.urlopen(f"{receiver}/spans", timeout=10) as answer:  # noqa: S310
        return int(answer.read())


def children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def throughput(flows: int, in_flight: int) -> tuple[float, float, float, int]:
    """The hub's flows per second in one sync_flows.py run; the CPU seconds its processes
    used (the hub's and the simulators', all ended with the run, the simulators' the same
    whether the hub exports or not); the hub's own CPU per flow (ms); and how many runs
    were repeated for a connection the simulator's keep-alive closed under the client (on a
    loaded machine)."""
    for repeated in range(RUNS_REPEATED):
        before = children_cpu_seconds()
        try:
            measured = run_sync_flows(["flow 6"], flows, in_flight, 100.0, 1.0, None, 1)
        except (BenchmarkFailure, aiohttp.ClientError) as broken:
            print(f"run repeated: {broken}", file=sys.stderr)
            continue
        flows_measured = measured.results[0]
        return (
            flows_measured.throughput("hub"),
            children_cpu_seconds() - before,
            flows_measured.hub_cpu_ms_per_flow,
            repeated,
        )
    raise BenchmarkFailure(f"{RUNS_REPEATED} runs in a row broke off")


def run(flows: int, in_flight: int, rounds: int, ratios: list[float]) -> Result:
    off = Arm(None, [], [], [])
    on = [Arm(ratio, [], [], []) for ratio in ratios]
    repeated = 0
    load_before = os.getloadavg()[0]
    with spawned_server(serve_receiver, "the OTLP receiver") as port:
        receiver = f"http://{LOOPBACK}:{port}"
        for _ in range(rounds):
            for arm in (off, *on):
                endpoint = None if arm.ratio is None else f"{receiver}/v1/traces"
                with exporting_to(endpoint, arm.ratio):
                    rate, cpu_seconds, hub_cpu, again = throughput(flows, in_flight)
                arm.rates.append(rate)
                arm.cpu.append(cpu_seconds)
                arm.hub_cpu.append(hub_cpu)
                repeated += again
        spans = spans_received(receiver)
    return Result(
        flows=flows,
        off=off,
        on=on,
        spans=spans,
        repeated=repeated,
        load=(load_before, os.getloadavg()[0]),
    )


def report(result: Result) -> str:
    rows = [
        ("flows per run", f"{result.flows:,} (sync_flows.py phase 1, hub in its own process)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
    ]
    for arm in (result.off, *result.on):
        rows += [
            (arm.name, " ".join(f"{rate:,.0f}" for rate in arm.rates) + " flows/s"),
            ("  median", f"{statistics.median(arm.rates):,.0f} flows/s"),
            ("  CPU per run", f"{statistics.median(arm.cpu):.2f} s (hub and simulators, median)"),
            ("  hub CPU per flow", " ".join(f"{ms:.2f}" for ms in arm.hub_cpu) + " ms"),
        ]
        if arm.ratio is not None:
            rows += [
                ("  fewer flows/s than off", f"{result.slowdown(arm):.1%}"),
                ("  hub CPU per flow over off", f"{result.cpu_added(arm):+.1%} (medians)"),
            ]
    rows += [
        ("spans received", f"{result.spans:,}"),
        ("runs repeated", f"{result.repeated} (a connection closed under the client)"),
        ("", ""),
        ("targets", ""),
    ]
    rows += [
        (
            f"ratio {arm.ratio:g}: fewer flows/s <= {MAX_SLOWDOWN:.0%}",
            verdict(result.slowdown(arm) <= MAX_SLOWDOWN),
        )
        for arm in result.on
    ]
    return table(rows)


def sample_ratio(text: str) -> float:
    ratio = float(text)
    if not 0 < ratio <= 1:
        raise argparse.ArgumentTypeError(f"a sample ratio is above 0 and at most 1: {text}")
    return ratio


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="sync_flows.py's throughput with tracing off and exporting at sample ratios"
    )
    parser.add_argument("--flows", type=positive, default=2000, help="flows per run (2000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    parser.add_argument("--rounds", type=positive, default=3, help="runs of each arm (3)")
    parser.add_argument(
        "--ratios",
        type=sample_ratio,
        nargs="+",
        default=[1.0, 0.1],
        help="the sample ratios exported at, one arm each (1.0 0.1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "trace_cost", lambda: run(args.flows, args.in_flight, args.rounds, args.ratios), report
    )


if __name__ == "__main__":
    sys.exit(main())
