"""Two versions of the hub's code measured side by side: a hub serving another checkout's
``src`` (``--base``, e.g. a worktree of main) and one serving this checkout's, the same
simulators behind both, fed sync_flows.py's flows in turn, a slice of flows each, the hub
that goes first alternating from slice to slice.

sync_flows.py's CPU per flow moves by a third from run to run on a shared machine, more
than a 5% change: here the two hubs' slices lie seconds apart, so the machine's load falls
on both alike, and each pair of slices is compared on its own. The medians of the pairs'
ratios (this over base: flows per second, and the hub's CPU per flow) are printed; nothing
is checked against a target. Each hub has a database of its own: a SQLite file in its
directory, or with ``--postgres`` a database this script creates on that server per hub
and drops after (the server's CPU is not counted). Every reply is checked. With
``--export`` both hubs export every trace to trace_cost.py's receiver: what a change to
tracing costs or saves, the rest of the hub's work the same on both sides.

Two hub processes of the same code differ too, by a few percent for their whole lives, and
the one started second read up to 3% less CPU per flow than the first (bench/README.md,
lean3): ``--rounds`` starts a fresh pair for each round, the version started first swapped
from round to round, and the medians are taken over every round's pairs of slices. The
noise left is read by running the base against a copy of itself (``--this`` a copy of the
base's ``src``).

    .venv/bin/python bench/versions_paired.py --base /work/wt/main-base/src [--this SRC]
        [--slices N] [--flows N] [--in-flight C] [--workload flow6|mix]
        [--postgres postgresql://USER@HOST:PORT/DB] [--export] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from derms_bridge.lookups import load_lookups
from derms_bridge.sandbox.servers import LOOPBACK
from harness import positive, report_or_fail, table
from paired import Slices, alternating_slices
from processes import (
    CPMCS_SIMULATOR,
    DERMS_SIMULATOR,
    LOOKUPS_DIR,
    HubProcess,
    simulator_process,
    spawned_server,
)
from sync_flows import (
    REPO,
    Workload,
    bench_database,
    flows_hub,
)
from trace_cost import exporting_to, serve_receiver

ARMS = ("base", "this")
WORKLOADS: dict[str, Workload] = {"flow6": "flow 6", "mix": "mix"}


@dataclass(frozen=True)
class Result:
    workload: Workload
    flows: int
    database: str
    sources: dict[str, Path]
    #: Each round's pair of hubs' slices.
    rounds: list[dict[str, Slices]]
    load: tuple[float, float]
    exporting: bool

    @property
    def slices(self) -> dict[str, Slices]:
        """Each version's slices, round after round."""
        return {
            arm: Slices(
                rates=[rate for measured in self.rounds for rate in measured[arm].rates],
                cpu_ms=[cpu for measured in self.rounds for cpu in measured[arm].cpu_ms],
            )
            for arm in ARMS
        }

    def ratios(self, of: str) -> list[float]:
        slices = self.slices
        this, base = (getattr(slices[arm], of) for arm in ("this", "base"))
        return [mine / theirs for mine, theirs in zip(this, base, strict=True)]


@contextmanager
def serving_source(source: Path) -> Iterator[None]:
    """The hub processes started inside import derms_bridge from `source` (a `src`
    folder), ahead of the one this environment has installed."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(source)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def run(
    base: Path,
    this: Path,
    workload: Workload,
    slices: int,
    flows: int,
    in_flight: int,
    postgres: str | None,
    export: bool,
    rounds: int,
) -> Result:
    load_before = os.getloadavg()[0]
    lookups = load_lookups(LOOKUPS_DIR)
    sources = {"base": base.resolve(), "this": this.resolve()}
    with ExitStack() as stack:
        cpmcs_url = stack.enter_context(simulator_process(CPMCS_SIMULATOR, "the CPMCS simulator"))
        derms_url = stack.enter_context(simulator_process(DERMS_SIMULATOR, "the DERMS simulator"))
        if export:
            receiver = stack.enter_context(spawned_server(serve_receiver, "the OTLP receiver"))
            stack.enter_context(exporting_to(f"http://{LOOPBACK}:{receiver}/v1/traces", 1.0))
        measured: list[dict[str, Slices]] = []
        for index in range(rounds):
            with ExitStack() as round_stack:
                hubs: dict[str, HubProcess] = {}
                for name in ARMS if index % 2 == 0 else ARMS[::-1]:
                    database_url = round_stack.enter_context(bench_database(postgres))
                    with serving_source(sources[name]):
                        hubs[name] = round_stack.enter_context(
                            flows_hub(cpmcs_url, derms_url, database_url)
                        )
                measured.append(
                    asyncio.run(
                        alternating_slices(
                            hubs, workload, f"V{index}", slices, flows, in_flight, lookups
                        )
                    )
                )
    return Result(
        workload=workload,
        flows=flows,
        database="PostgreSQL" if postgres else "SQLite",
        sources=sources,
        rounds=measured,
        load=(load_before, os.getloadavg()[0]),
        exporting=export,
    )


def report(result: Result) -> str:
    def listed(values: list[float], form: str) -> str:
        return " ".join(format(value, form) for value in values)

    rate_ratios, cpu_ratios = result.ratios("rates"), result.ratios("cpu_ms")
    slices = result.slices
    rows = [
        ("base", str(result.sources["base"])),
        ("this", str(result.sources["this"])),
        (
            "flows per slice",
            f"{result.flows:,} ({result.workload}, each hub in its own process, {result.database})",
        ),
        ("rounds", f"{len(result.rounds)} (a fresh pair of hubs each, the first started swapped)"),
        ("load average", f"{result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end"),
        ("tracing", "both hubs export every trace" if result.exporting else "off"),
    ]
    for name in ARMS:
        rows += [
            (name, listed(slices[name].rates, ",.0f") + " flows/s"),
            ("  hub CPU per flow", listed(slices[name].cpu_ms, ".2f") + " ms"),
        ]
    rows += [
        ("this / base, flows/s", listed(rate_ratios, ".3f") + " (each pair of slices)"),
        ("this / base, CPU per flow", listed(cpu_ratios, ".3f")),
        (
            "medians, base / this",
            f"{statistics.median(slices['base'].rates):,.0f} / "
            f"{statistics.median(slices['this'].rates):,.0f} flows/s, "
            f"{statistics.median(slices['base'].cpu_ms):.3f} / "
            f"{statistics.median(slices['this'].cpu_ms):.3f} ms CPU per flow",
        ),
        ("flows/s, this over base", f"{statistics.median(rate_ratios) - 1:+.1%} (median pair)"),
        ("CPU per flow, this over base", f"{statistics.median(cpu_ratios) - 1:+.1%} (median pair)"),
    ]
    return table(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="two versions of the hub side by side, in alternating slices"
    )
    parser.add_argument("--base", type=Path, required=True, help="the other version's src folder")
    parser.add_argument(
        "--this",
        type=Path,
        default=REPO / "src",
        help="the version measured against the base (default: this checkout's src)",
    )
    parser.add_argument(
        "--rounds", type=positive, default=1, help="fresh pairs of hubs, one after the other (1)"
    )
    parser.add_argument("--slices", type=positive, default=10, help="slices per hub, a round (10)")
    parser.add_argument("--flows", type=positive, default=1000, help="flows per slice (1000)")
    parser.add_argument("--in-flight", type=positive, default=32, help="in flight (32)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="flow6")
    parser.add_argument("--postgres", help="a PostgreSQL server's URL (default: SQLite)")
    parser.add_argument(
        "--export", action="store_true", help="both hubs export every trace to a receiver"
    )
    args = parser.parse_args(argv)
    for source in (args.base, args.this):
        if not (source / "derms_bridge").is_dir():
            parser.error(f"{source} has no derms_bridge package")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_or_fail(
        "versions_paired",
        lambda: run(
            args.base,
            args.this,
            WORKLOADS[args.workload],
            args.slices,
            args.flows,
            args.in_flight,
            args.postgres,
            args.export,
            args.rounds,
        ),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
