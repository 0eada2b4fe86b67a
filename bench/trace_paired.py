"""What exporting every trace costs the hub, measured on two hubs side by side: one with
tracing off, one exporting every trace (`sample_ratio` 1.0) to trace_cost.py's receiver,
the same simulators behind both, fed sync_flows.py's flow 6 in turn, a slice of flows
each, the hub that goes first alternating from slice to slice.

trace_cost.py starts a hub per run, and on a shared machine one arm's runs spread by a
third, more than the 5% it must tell: here the two hubs' slices lie seconds apart, so the
machine's load falls on both alike, and each pair of slices is compared on its own. The
medians of the pairs' ratios (export on over off: flows per second, and the hub's CPU per
flow) are checked against the target: at most 5% fewer flows per second.

`--same` starts both hubs with tracing off: what the two hubs differ by with the same
code, the noise a run's figures are read against (bench/README.md, wave6-trace). Two hub
processes with the same code differ by a few percent for their whole lives, so one pair
could decide a run: `--rounds` starts a fresh pair for each round, and the median is taken
over every round's pairs of slices.

    .venv/bin/python bench/trace_paired.py [--rounds N] [--slices N] [--flows N]
        [--in-flight C] [--same]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from contextlib import ExitStack
from dataclasses import dataclass

from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.servers import LOOPBACK
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict
from paired import Slices, alternating_slices, flows_served
from processes import (
    CPMCS_SIMULATOR,
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    HubProcess,
    simulator_process,
    spawned_server,
)
from sync_flows import (
    flows_hub,
)
from trace_cost import MAX_SLOWDOWN, exporting_to, serve_receiver, spans_received

ARMS = ("off", "on")


@dataclass(frozen=True)
class Result:
    flows: int
    #: Each pair of hubs' slices, a pair started afresh per round.
    rounds: list[dict[str, Slices]]
    spans: int
    load: tuple[float, float]
    #: Both hubs with tracing off (--same).
    same: bool = False

    @property
    def off(self) -> Slices:
        return _joined(self.rounds, "off")

    @property
    def on(self) -> Slices:
        return _joined(self.rounds, "on")

    @property
    def expected_spans(self) -> int:
        """Two per flow the exporting hub served, its warm-ups' included."""
        return (
            2 * len(self.rounds) * flows_served(len(self.on.rates) // len(self.rounds), self.flows)
        )

    @property
    def rate_ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.on.rates, self.off.rates, strict=True)]

    @property
    def cpu_ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.on.cpu_ms, self.off.cpu_ms, strict=True)]

    @property
    def slowdown(self) -> float:
        return 1 - statistics.median(self.rate_ratios)

    @property
    def cpu_added(self) -> float:
        return statistics.median(self.cpu_ratios) - 1

    @property
    def round_slowdowns(self) -> list[float]:
        """Each round's own median: how far one pair of processes strays from the others."""
        return [
            1
            - statistics.median(
                on / off for on, off in zip(r["on"].rates, r["off"].rates, strict=True)
            )
            for r in self.rounds
        ]


def _joined(rounds: list[dict[str, Slices]], arm: str) -> Slices:
    return Slices(
        rates=[rate for measured in rounds for rate in measured[arm].rates],
        cpu_ms=[cpu for measured in rounds for cpu in measured[arm].cpu_ms],
    )


def run(rounds: int, slices: int, flows: int, in_flight: int, same: bool) -> Result:
    load_before = os.getloadavg()[0]
    lookups = load_lookups(LOOKUPS_DIR)
    measured: list[dict[str, Slices]] = []
    with spawned_server(serve_receiver, "the OTLP receiver") as port:
        receiver = f"http://{LOOPBACK}:{port}"
        # Closed before the spans are counted: the exporting hub sends its last at its stop.
        with ExitStack() as simulators:
            cpmcs_url = simulators.enter_context(
                simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator")
            )
            derms_url = simulators.enter_context(
                simulator_process(DERMS_SIMULATOR, "the DERMS simulator")
            )
            for index in range(rounds):
                # A hub process runs a few percent faster or slower than another with the
                # same code, for its whole life (`--same`): fresh processes each round, and
                # the arm started first swapped, so that no one pair decides the median.
                with ExitStack() as stack:
                    hubs: dict[str, HubProcess] = {}
                    for name in ARMS if index % 2 == 0 else ARMS[::-1]:
                        endpoint = f"{receiver}/v1/traces" if name == "on" and not same else None
                        with exporting_to(endpoint, 1.0 if endpoint else None):
                            hubs[name] = stack.enter_context(flows_hub(cpmcs_url, derms_url))
                    measured.append(
                        asyncio.run(
                            alternating_slices(
                                hubs, "flow 6", f"P{index}", slices, flows, in_flight, lookups
                            )
                        )
                    )
        spans = spans_received(receiver)
    served = rounds * flows_served(slices, flows)
    expected = 0 if same else 2 * served
    # More is not a loss: a request the client sent again after a keep-alive connection
    # closed under it is a flow served twice, and an export is delivered at least once.
    if spans < expected or (same and spans):
        raise BenchmarkFailure(f"the receiver got {spans:,} spans, not {expected:,}")
    return Result(
        flows=flows,
        rounds=measured,
        spans=spans,
        load=(load_before, os.getloadavg()[0]),
        same=same,
    )


def report(result: Result) -> str:
    def listed(values: list[float], form: str) -> str:
        return " ".join(format(value, form) for value in values)

    rows = [
        ("flows per slice", f"{result.flows:,} (flow 6, each hub in its own process)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
        ("tracing off", listed(result.off.rates, ",.0f") + " flows/s"),
        ("  hub CPU per flow", listed(result.off.cpu_ms, ".2f") + " ms"),
        (
            "tracing off, 2nd hub" if result.same else "export on, ratio 1",
            listed(result.on.rates, ",.0f") + " flows/s",
        ),
        ("  hub CPU per flow", listed(result.on.cpu_ms, ".2f") + " ms"),
        ("on / off, flows/s", listed(result.rate_ratios, ".3f") + " (each pair of slices)"),
        ("on / off, CPU per flow", listed(result.cpu_ratios, ".3f")),
        (
            "each round's median",
            " ".join(f"{slowdown:.1%}" for slowdown in result.round_slowdowns)
            + f" ({len(result.rounds)} pairs of hub processes)",
        ),
        ("fewer flows/s with export", f"{result.slowdown:.1%} (median of all the pairs)"),
        ("hub CPU per flow over off", f"{result.cpu_added:+.1%} (median of all the pairs)"),
    ]
    if result.same:
        # Neither hub traces: no target to check, the figures are the noise between hubs.
        return table(rows)
    rows += [
        (
            "spans received",
            f"{result.spans:,} (two per flow the exporting hub served"
            + (
                f"; {result.spans - result.expected_spans:,} more: sent again)"
                if result.spans > result.expected_spans
                else ")"
            ),
        ),
        ("", ""),
        ("targets", ""),
        (f"fewer flows/s <= {MAX_SLOWDOWN:.0%}", verdict(result.slowdown <= MAX_SLOWDOWN)),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="two hubs side by side, tracing off and exporting every trace"
    )
    parser.add_argument(
        "--rounds", type=positive, default=1, help="pairs of hubs started one after the other (1)"
    )
    parser.add_argument(
        "--slices", type=positive, default=10, help="slices per hub in each round (10)"
    )
    parser.add_argument("--flows", type=positive, default=1000, help="flows per slice (1000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    parser.add_argument(
        "--same", action="store_true", help="both hubs with tracing off (the noise floor)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "trace_paired",
        lambda: run(args.rounds, args.slices, args.flows, args.in_flight, args.same),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
