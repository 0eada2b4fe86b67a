"""What exporting every trace costs one hub process, with the process's own noise taken
out: the hub turns exporting off and on between phases of `--flows` flows of flow 6
(toggled_export/sitecustomize.py, loaded by this hub alone), in the order on, off, off,
on, and each "on" phase is compared with the "off" phase of the same rank: flows per
second, the event loop thread's CPU per flow and the whole process's, each other thread's
(the export thread, the database's) and the cyclic collector's.

trace_paired.py compares two hub processes, and two processes with the same code differ
by up to 14% in CPU, more than the 5% it must tell: it takes many rounds, and its rounds'
medians spread from -11% to +19% (bench/README.md, lean4). Here both arms run in one
process, a second apart. A phase's flows are all answered before the benchmark ends it
(`POST /_bench/toggle`, answered by sitecustomize.py), so no request runs across two
phases, and its flows per second are the flows over the seconds from its first request to
its last answer. `--control` keeps exporting off in both arms: what the method reads when
there is nothing to find. `--made-only` makes and ends the spans of the "on" phases as ever
but queues none for the export thread: what making them costs the event loop on its own.
`--runs` starts a hub process per run and pools their pairs, with the interval in which
the pooled median lies nine times in ten when the runs and their pairs are drawn again.

    .venv/bin/python bench/trace_toggled.py [--runs N] [--phases N] [--flows N]
        [--in-flight C] [--control | --made-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.servers import LOOPBACK
from harness import BenchmarkFailure, positive, report_or_fail, table, verdict
from processes import (
    CPMCS_SIMULATOR,
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    simulator_process,
    spawned_server,
)
from sync_flows import WARM_UP_FLOWS, chains, flows_hub, hub_arm, run_bounded, session
from trace_cost import MAX_SLOWDOWN, exporting_to, serve_receiver

SITE = Path(__file__).with_name("toggled_export")
#: toggled_export/sitecustomize.py's.
TOGGLE_PATH = "/_bench/toggle"
#: Phases left out: the warm-up's (on), and the first after it (off), so that each pair's
#: phases are neighbours: (3, 2), (4, 5), (7, 6), ...
SKIPPED_PHASES = 2
#: The resampling's own seed: the same phases give the same interval.
RESAMPLING_SEED = 16


@dataclass(frozen=True)
class Phase:
    on: bool
    flows_per_second: float
    loop_us: float
    process_us: float
    #: Each thread's by its name, the event loop's ("MainThread") among them.
    threads_us: dict[str, float]
    #: The cyclic collector's, in whichever thread it ran (mostly the event loop's).
    collector_us: float


def slowdowns(pairs: list[tuple[Phase, Phase]]) -> list[float]:
    """Each pair's share of flows per second lost with export on."""
    return [1 - on.flows_per_second / off.flows_per_second for on, off in pairs]


@dataclass(frozen=True)
class Result:
    flows: int
    #: Each run's phases, a hub process of its own per run.
    runs: list[list[Phase]]
    control: bool
    made_only: bool
    load: tuple[float, float]

    @property
    def run_pairs(self) -> list[list[tuple[Phase, Phase]]]:
        """Each run's pairs: its "on" phases with its "off" phases of the same rank."""
        paired = []
        for phases in self.runs:
            kept = phases[SKIPPED_PHASES:]
            on = [phase for phase in kept if phase.on]
            off = [phase for phase in kept if not phase.on]
            paired.append(list(zip(on, off, strict=False)))
        return paired

    @property
    def pairs(self) -> list[tuple[Phase, Phase]]:
        """Every run's pairs, pooled."""
        return [pair for pairs in self.run_pairs for pair in pairs]

    def added(self, part: str) -> list[float]:
        return [getattr(on, part) - getattr(off, part) for on, off in self.pairs]

    def slowdown_interval(self, resamples: int = 2000) -> tuple[float, float]:
        """Where the pooled median of the slowdowns lies nine times in ten: the runs drawn
        again with replacement, then each drawn run's pairs (a run's hub process may differ
        from another's as a whole)."""
        draw = random.Random(RESAMPLING_SEED)
        runs = [slowdowns(pairs) for pairs in self.run_pairs]
        medians = sorted(
            statistics.median(
                lost
                for run in draw.choices(runs, k=len(runs))
                for lost in draw.choices(run, k=len(run))
            )
            for _ in range(resamples)
        )
        return medians[resamples // 20], medians[resamples - 1 - resamples // 20]

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
def toggled(out: Path, control: bool, made_only: bool) -> Iterator[None]:
    """The hubs started inside load toggled_export/sitecustomize.py."""
    wanted = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")])),
        "TRACE_TOGGLE_OUT": str(out),
        "TRACE_TOGGLE_CONTROL": "1" if control else "",
        "TRACE_TOGGLE_MADE_ONLY": "1" if made_only else "",
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


async def fed(url: str, phases: int, flows: int, in_flight: int) -> list[float]:
    """Each phase's flows per second, the warm-up's first; the hub ends each phase (the
    warm-up's too) when told, once all its flows are answered."""
    lookups = load_lookups(LOOKUPS_DIR)
    client = session(url, in_flight)
    try:
        arm = hub_arm(client)
        seconds = [await run_bounded(arm, chains("flow 6", "TW", WARM_UP_FLOWS, lookups), 8)]
        await end_phase(client)
        for index in range(phases):
            work = chains("flow 6", f"TS{index:03d}", flows, lookups)
            seconds.append(await run_bounded(arm, work, in_flight))
            await end_phase(client)
    finally:
        await client.close()
    return [WARM_UP_FLOWS / seconds[0], *(flows / taken for taken in seconds[1:])]


async def end_phase(client: aiohttp.ClientSession) -> None:
    async with client.post(TOGGLE_PATH) as answer:
        if answer.status != 204:
            raise BenchmarkFailure(f"the hub answered {answer.status} to {TOGGLE_PATH}")


def run(phases: int, flows: int, in_flight: int, control: bool, made_only: bool) -> list[Phase]:
    """One hub process's phases, the warm-up's first."""
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
                toggled(out, control, made_only),
            ):
                hub = stack.enter_context(flows_hub(cpmcs_url, derms_url))
            rates = asyncio.run(fed(hub.url, phases + SKIPPED_PHASES - 1, flows, in_flight))
        measured = [json.loads(line) for line in out.read_text().splitlines()]
    if len(measured) != len(rates):
        raise BenchmarkFailure(f"the hub ended {len(measured)} phases, the load {len(rates)}")
    return [
        Phase(m["on"], rate, m["loop_us"], m["process_us"], m["threads_us"], m["collector_us"])
        for m, rate in zip(measured, rates, strict=True)
    ]


def measure(
    runs: int, phases: int, flows: int, in_flight: int, control: bool, made_only: bool
) -> Result:
    load_before = os.getloadavg()[0]
    measured = [run(phases, flows, in_flight, control, made_only) for _ in range(runs)]
    return Result(
        flows=flows,
        runs=measured,
        control=control,
        made_only=made_only,
        load=(load_before, os.getloadavg()[0]),
    )


def report(result: Result) -> str:
    def listed(values: list[float]) -> str:
        return " ".join(f"{value:+.0f}" for value in values)

    rows = [
        ("flows per phase", f"{result.flows:,} (flow 6)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
        (
            "exporting",
            "off in both arms (--control)"
            if result.control
            else "toggled on, off, off, on"
            + (": spans made, none exported (--made-only)" if result.made_only else ""),
        ),
        ("runs", f"{len(result.runs)} (a hub process each)"),
        ("pairs of phases", f"{len(result.pairs)}"),
    ]
    slowdown = statistics.median(slowdowns(result.pairs))
    low, high = result.slowdown_interval()
    rows += [
        (
            "flows/s, off",
            f"{statistics.median(off.flows_per_second for _, off in result.pairs):,.0f} (median)",
        ),
        (
            "  fewer on than off",
            " ".join(f"{lost:+.1%}" for lost in slowdowns(result.pairs)) + " (each pair)"
            if len(result.runs) == 1
            else " ".join(
                f"{statistics.median(slowdowns(pairs)):+.1%}" for pairs in result.run_pairs
            )
            + " (each run's median)",
        ),
        (
            "  median, all pairs",
            f"{slowdown:+.2%} (nine times in ten within {low:+.2%} to {high:+.2%})",
        ),
        (
            f"  fewer flows/s <= {MAX_SLOWDOWN:.0%}",
            f"{verdict(slowdown <= MAX_SLOWDOWN)} at the median, "
            f"{verdict(high <= MAX_SLOWDOWN)} at the interval's top",
        ),
    ]
    for part, name in (("loop_us", "event loop thread"), ("process_us", "whole process")):
        added = result.added(part)
        off = result.off_median(part)
        median = statistics.median(added)
        rows += [
            (f"{name}, off", f"{off:.0f} us per flow (median)"),
            (
                "  on over off",
                listed(added) + " us per flow (each pair)"
                if len(result.runs) == 1
                else listed(
                    [
                        statistics.median(
                            getattr(on, part) - getattr(off, part) for on, off in pairs
                        )
                        for pairs in result.run_pairs
                    ]
                )
                + " us per flow (each run's median)",
            ),
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
    parser.add_argument("--runs", type=positive, default=1, help="hub processes, in turn (1)")
    parser.add_argument("--phases", type=positive, default=56, help="phases a run (56)")
    parser.add_argument("--flows", type=positive, default=1000, help="flows per phase (1000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    arms = parser.add_mutually_exclusive_group()
    arms.add_argument(
        "--control", action="store_true", help="exporting off in both arms (the noise floor)"
    )
    arms.add_argument(
        "--made-only",
        action="store_true",
        help="spans made and ended, none exported (what making them costs on its own)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "trace_toggled",
        lambda: measure(
            args.runs, args.phases, args.flows, args.in_flight, args.control, args.made_only
        ),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
