"""What exporting traces costs the hub: sync_flows.py's throughput phase with tracing off,
then with every span exported over OTLP/HTTP to a receiver on loopback, in one run,
alternating the two so that the machine's load falls on both alike.

The receiver is a process of its own that decodes each ExportTraceServiceRequest, as a
collector does, and counts its spans. Target: with export on, at most 5% fewer flows per
second than with it off.

    .venv/bin/python bench/trace_cost.py [--flows N] [--in-flight C] [--rounds R]
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
def exporting_to(endpoint: str | None) -> Iterator[None]:
    """The hub processes started inside export to `endpoint` (None: tracing off)."""
    before = os.environ.pop(TRACE_EXPORT_VARIABLE, None)
    if endpoint is not None:
        os.environ[TRACE_EXPORT_VARIABLE] = endpoint
    try:
        yield
    finally:
        os.environ.pop(TRACE_EXPORT_VARIABLE, None)
        if before is not None:
            os.environ[TRACE_EXPORT_VARIABLE] = before


@dataclass(frozen=True)
class Result:
    flows: int
    off: list[float]
    on: list[float]
    #: CPU seconds of the hub's and the simulators' processes, per run.
    cpu_off: list[float]
    cpu_on: list[float]
    spans: int
    repeated: int

    @property
    def slowdown(self) -> float:
        return 1 - statistics.median(self.on) / statistics.median(self.off)


def spans_received(receiver: str) -> int:
    with urllib.request.urlopen(f"{receiver}/spans", timeout=10) as answer:  # noqa: S310
        return int(answer.read())


def children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def throughput(flows: int, in_flight: int) -> tuple[float, float, int]:
    """The hub's flows per second in one sync_flows.py run; the CPU seconds its processes
    used (the hub's and the simulators', all ended with the run, the simulators' the same
    whether the hub exports or not); and how many runs were repeated for a connection the
    simulator's keep-alive closed under the client (on a loaded machine)."""
    for repeated in range(RUNS_REPEATED):
        before = children_cpu_seconds()
        try:
            measured = run_sync_flows(["flow 6"], flows, in_flight, 100.0, 1.0, None, 1)
        except (BenchmarkFailure, aiohttp.ClientError) as broken:
            print(f"run repeated: {broken}", file=sys.stderr)
            continue
        hub_rate = measured.results[0].throughput("hub")
        return hub_rate, children_cpu_seconds() - before, repeated
    raise BenchmarkFailure(f"{RUNS_REPEATED} runs in a row broke off")


def run(flows: int, in_flight: int, rounds: int) -> Result:
    off: list[float] = []
    on: list[float] = []
    cpu: dict[bool, list[float]] = {False: [], True: []}
    repeated = 0
    with spawned_server(serve_receiver, "the OTLP receiver") as port:
        receiver = f"http://{LOOPBACK}:{port}"
        for _ in range(rounds):
            for endpoint, rates in ((None, off), (f"{receiver}/v1/traces", on)):
                with exporting_to(endpoint):
                    rate, cpu_seconds, again = throughput(flows, in_flight)
                rates.append(rate)
                cpu[endpoint is not None].append(cpu_seconds)
                repeated += again
        spans = spans_received(receiver)
    return Result(
        flows=flows,
        off=off,
        on=on,
        cpu_off=cpu[False],
        cpu_on=cpu[True],
        spans=spans,
        repeated=repeated,
    )


def report(result: Result) -> str:
    rows = [
        ("flows per run", f"{result.flows:,} (sync_flows.py phase 1, hub in its own process)"),
        ("tracing off", " ".join(f"{rate:,.0f}" for rate in result.off) + " flows/s"),
        ("export on", " ".join(f"{rate:,.0f}" for rate in result.on) + " flows/s"),
        (
            "median off / on",
            f"{statistics.median(result.off):,.0f} / {statistics.median(result.on):,.0f} flows/s",
        ),
        (
            "CPU per run off / on",
            f"{statistics.median(result.cpu_off):.2f} s / {statistics.median(result.cpu_on):.2f} s"
            " (hub and simulators' processes, medians)",
        ),
        ("spans received", f"{result.spans:,}"),
        ("runs repeated", f"{result.repeated} (a connection closed under the client)"),
        ("fewer flows/s with export", f"{result.slowdown:.1%}"),
        ("", ""),
        ("targets", ""),
        (f"fewer flows/s <= {MAX_SLOWDOWN:.0%}", verdict(result.slowdown <= MAX_SLOWDOWN)),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="sync_flows.py's throughput with tracing off and with OTLP export on"
    )
    parser.add_argument("--flows", type=positive, default=2000, help="flows per run (2000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    parser.add_argument("--rounds", type=positive, default=3, help="off/on pairs (3)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "trace_cost", lambda: run(args.flows, args.in_flight, args.rounds), report
    )


if __name__ == "__main__":
    sys.exit(main())
