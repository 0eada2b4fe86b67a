"""What exporting every trace costs one hub process, with the process's own noise taken
out: the hub turns exporting off and on every `--flows` requests (toggled_export/
sitecustomize.py, loaded by this hub alone), in the order on, off, off, on, fed flow 6
without a pause, and each "on" phase is compared with the "off" phase of the same rank:
the event loop thread's CPU per flow and the whole process's, each other thread's (the
export thread, the database's) and the cyclic collector's.

trace_paired.py compares two hub processes, and two processes with the same code differ
by up to 14% in CPU, more than the 5% it must tell: it takes many rounds. Here both arms
run in one process, seconds apart; with the default 56 phases (28 pairs, about a minute)
the medians of the pairs stayed within about 5 us a flow of each other from run to run,
with 28 phases within 14 (bench/README.md, trace-wrap). It reads CPU only (no flows per second: the
phases' boundaries fall among requests in flight), and `--control` keeps exporting off
in both arms, what the method reads when there is nothing to find.

    .venv/bin/python bench/trace_toggled.py [--phases N] [--flows N] [--in-flight C]
        [--control]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.servers import LOOPBACK
from harness import positive, report_or_fail, table
from processes import (
    CPMCS_SIMULATOR,
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    simulator_process,
    spawned_server,
)
from sync_flows import WARM_UP_FLOWS, chains, flows_hub, hub_arm, run_bounded, session
from trace_cost import exporting_to, serve_receiver

SITE = Path(__file__).with_name("toggled_export")
#: Phases left out: the warm-up's, and the first after it.
SKIPPED_PHASES = 2


@dataclass(frozen=True)
class Phase:
    on: bool
    loop_us: float
    process_us: float
    #: Each thread's by its name, the event loop's ("MainThread") among them.
    threads_us: dict[str, float]
    #: The cyclic collector's, in whichever thread it ran (mostly the event loop's).
    collector_us: float


@dataclass(frozen=True)
class Result:
    flows: int
    phases: list[Phase]
    control: bool
    load: tuple[float, float]

    def _arm(self, on: bool) -> list[Phase]:
        return [phase for phase in self.phases[SKIPPED_PHASES:] if phase.on is on]

    @property
    def pairs(self) -> list[tuple[Phase, Phase]]:
        return list(zip(self._arm(True), self._arm(False), strict=False))

    def added(self, part: str) -> list[float]:
        return [getattr(on, part) - getattr(off, part) for on, off in self.pairs]

    def thread_added(self) -> dict[str, float]:
        """Each thread but the event loop's, on over off at the median of the pairs: those
        running in both phases of every pair."""
        names = set.intersection(
            *(set(on.threads_us) & set(off.threads_us) for on, off in self.pairs)
        )
        names.discard("MainThread")
        return {
            name: statistics.median(
                on.threads_us[name] - off.threads_us[name] for on, off in self.pairs
            )
            for name in names
        }

    def off_median(self, part: str) -> float:
        return statistics.median(float(getattr(off, part)) for _, off in self.pairs)


@contextmanager
def toggled(out: Path, flows: int, control: bool) -> Iterator[None]:
    """The hubs started inside load toggled_export/sitecustomize.py."""
    wanted = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
        "TRACE_TOGGLE_OUT": str(out),
        "TRACE_TOGGLE_FLOWS": str(flows),
        "TRACE_TOGGLE_CONTROL": "1" if control else "",
    }
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


async def fed(url: str, phases: int, flows: int, in_flight: int) -> None:
    lookups = load_lookups(LOOKUPS_DIR)
    client = session(url, in_flight)
    try:
        arm = hub_arm(client)
        await run_bounded(arm, chains("flow 6", "TW", WARM_UP_FLOWS, lookups), 8)
        for index in range(phases):
            await run_bounded(arm, chains("flow 6", f"TS{index:03d}", flows, lookups), in_flight)
    finally:
        await client.close()


def run(phases: int, flows: int, in_flight: int, control: bool) -> Result:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="trace-toggled-") as scratch:
        out = Path(scratch) / "phases.jsonl"
        with spawned_server(serve_receiver, "the OTLP receiver") as port, ExitStack() as stack:
            cpmcs_url = stack.enter_context(
                simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator")
            )
            derms_url = stack.enter_context(
                simulator_process(DERMS_SIMULATOR, "the DERMS simulator")
            )
            with (
                exporting_to(f"http://{LOOPBACK}:{port}/v1/traces", 1.0),
                toggled(out, flows, control),
            ):
                hub = stack.enter_context(flows_hub(cpmcs_url, derms_url))
            asyncio.run(fed(hub.url, phases + SKIPPED_PHASES, flows, in_flight))
        measured = [json.loads(line) for line in out.read_text().splitlines()]
    return Result(
        flows=flows,
        phases=[
            Phase(m["on"], m["loop_us"], m["process_us"], m["threads_us"], m["collector_us"])
            for m in measured
        ],
        control=control,
        load=(load_before, os.getloadavg()[0]),
    )


def report(result: Result) -> str:
    def listed(values: list[float]) -> str:
        return " ".join(f"{value:+.0f}" for value in values)

    rows = [
        ("flows per phase", f"{result.flows:,} (flow 6, one hub process)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
        (
            "exporting",
            "off in both arms (--control)" if result.control else "toggled on, off, off, on",
        ),
        ("pairs of phases", f"{len(result.pairs)}"),
    ]
    for part, name in (("loop_us", "event loop thread"), ("process_us", "whole process")):
        added = result.added(part)
        off = result.off_median(part)
        median = statistics.median(added)
        rows += [
            (f"{name}, off", f"{off:.0f} us per flow (median)"),
            ("  on over off", listed(added) + " us per flow (each pair)"),
            (
                "  median",
                f"{median:+.1f} us per flow, {median / off:+.1%}",
            ),
        ]
    threads = result.thread_added()
    rows += [
        ("other threads, on over off", "us per flow (median of the pairs)"),
        *(
            (f"  {name}", f"{added:+.1f}")
            # The busiest first; a thread that adds less than 0.05 us a flow is idle.
            for name, added in sorted(threads.items(), key=lambda item: -abs(item[1]))
            if abs(added) >= 0.05
        ),
        (
            "cyclic collector, on over off",
            f"{statistics.median(result.added('collector_us')):+.1f} us per flow "
            f"(of {result.off_median('collector_us'):.0f} off)",
        ),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="one hub turning exporting off and on, phase after phase"
    )
    parser.add_argument("--phases", type=positive, default=56, help="phases measured (56)")
    parser.add_argument("--flows", type=positive, default=1000, help="flows per phase (1000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    parser.add_argument(
        "--control", action="store_true", help="exporting off in both arms (the noise floor)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "trace_toggled", lambda: run(args.phases, args.flows, args.in_flight, args.control), report
    )


if __name__ == "__main__":
    sys.exit(main())
