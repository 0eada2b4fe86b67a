"""What tracing costs per synchronous message in the hub's own process, without the rest
of the hub: the spans of one message made as the hub makes them (its request, which is
its instance, and its call to CPMCS, with their attributes), ended, batched, encoded and
posted to an OTLP/HTTP receiver in a process of its own, all in the CPU time of this
process (`time.process_time`, every thread, the exporter's included).

Tracing off and export on alternate in each round, so that the machine's load falls on
both alike. Target: export on adds at most 5% of a synchronous flow's CPU in the hub,
`--flow-cpu-ms` (1.05 ms: what trace_cost.py measured of the hub's CPU per flow with
tracing off on 2026-12-04). It is a floor of what the hub pays: the hub's off arm skips
the request's span altogether, and its heap and threads are larger.

    .venv/bin/python bench/span_cost.py [--messages N] [--rounds R] [--flow-cpu-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass

from derms_bridge import tracing
from derms_bridge.engine.run_context import ended_as, instance_span
from derms_bridge.ids import new_instance_id
from derms_bridge.sandbox.servers import LOOPBACK
from derms_bridge.settings.tracing import Tracing
from harness import BenchmarkFailure, positive, positive_float, report_or_fail, table, verdict
from processes import spawned_server
from trace_cost import serve_receiver, spans_received

MAX_SLOWDOWN = 0.05
PATH = "/rest/apis/cross/digitalAssets/programEnrollments/enroll"


def message(instance_id: str) -> None:
    """One synchronous message's spans, as TracedRequests, the engine and the HTTP client
    make them, for the instance `instance_id`."""
    request, token = tracing.start_request(
        "POST /enroll-to-dacs",
        tracing.continued({}),
        {
            "http.request.method": "POST",
            "url.path": "/enroll-to-dacs",
            "http.route": "/enroll-to-dacs",
        },
    )
    try:
        with instance_span("enrollment_request", instance_id, caller="derms") as instance:
            with tracing.outbound(
                "CPMCS enrollProgram",
                {"http.request.method": "POST", "server.address": LOOPBACK, "url.path": PATH},
            ) as call:
                call.answered(200, None)
            ended_as(instance, "done")
        tracing.answered(request, 200)
    finally:
        tracing.end_request(request, token)


def microseconds_per_message(messages: int, endpoint: str | None) -> float:
    """CPU per message, the final export of what is left included."""
    if endpoint is not None:
        # The queue (2,048 spans by default) would drop spans made faster than its thread
        # sends them, and a dropped span costs nothing to encode: room for them all.
        tracing.start_exporting(
            Tracing(endpoint=endpoint, batch_delay_seconds=1.0, max_queued_spans=2 * messages),
            process="span_cost",
        )
    # An id of its own for every message, as the hub's instances have, made before the
    # clock starts: one id for all had let the encoder remember the instance's attribute
    # after the first span, which it never can in the hub.
    instance_ids = [new_instance_id() for _ in range(messages)]
    started = time.process_time()
    for instance_id in instance_ids:
        message(instance_id)
    asyncio.run(tracing.stop_exporting())
    return (time.process_time() - started) / messages * 1e6


@dataclass(frozen=True)
class Result:
    messages: int
    flow_cpu_ms: float
    off: list[float]
    on: list[float]
    spans: int
    load: tuple[float, float]

    @property
    def added(self) -> float:
        return statistics.median(self.on) - statistics.median(self.off)

    @property
    def allowed(self) -> float:
        return self.flow_cpu_ms * 1000 * MAX_SLOWDOWN


def run(messages: int, rounds: int, flow_cpu_ms: float) -> Result:
    off: list[float] = []
    on: list[float] = []
    load_before = os.getloadavg()[0]
    with spawned_server(serve_receiver, "the OTLP receiver") as port:
        receiver = f"http://{LOOPBACK}:{port}"
        for _ in range(rounds):
            off.append(microseconds_per_message(messages, None))
            on.append(microseconds_per_message(messages, f"{receiver}/v1/traces"))
        spans = spans_received(receiver)
    if spans != 2 * messages * rounds:
        raise BenchmarkFailure(f"the receiver got {spans:,} spans, not {2 * messages * rounds:,}")
    return Result(messages, flow_cpu_ms, off, on, spans, (load_before, os.getloadavg()[0]))


def report(result: Result) -> str:
    rows = [
        ("messages per run", f"{result.messages:,} (two spans each with export on)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
        ("tracing off", " ".join(f"{cost:.0f}" for cost in result.off) + " us per message"),
        ("export on", " ".join(f"{cost:.0f}" for cost in result.on) + " us per message"),
        (
            "added (medians)",
            f"{result.added:.0f} us per message, {result.added / result.flow_cpu_ms / 10:.1f}%"
            f" of a flow's {result.flow_cpu_ms:g} ms",
        ),
        ("spans received", f"{result.spans:,}"),
        ("", ""),
        ("targets", ""),
        (
            f"added <= {MAX_SLOWDOWN:.0%} ({result.allowed:.0f} us)",
            verdict(result.added <= result.allowed),
        ),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tracing's CPU per message in one process")
    parser.add_argument("--messages", type=positive, default=10_000, help="per run (10000)")
    parser.add_argument("--rounds", type=positive, default=5, help="runs of each arm (5)")
    parser.add_argument(
        "--flow-cpu-ms",
        type=positive_float,
        default=1.05,
        help="the hub's CPU per synchronous flow, tracing off, in ms (1.05)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "span_cost", lambda: run(args.messages, args.rounds, args.flow_cpu_ms), report
    )


if __name__ == "__main__":
    sys.exit(main())
