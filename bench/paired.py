"""Two hubs fed the same workload in alternating slices (trace_paired.py, versions_paired.py):
the hub that goes first swaps from slice to slice, so that the machine's load falls on both
alike, and each pair of slices is compared on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from derms_bridge.lookups import Lookups
from processes import HubProcess
from sync_flows import WARM_UP_FLOWS, Workload, chains, hub_arm, run_bounded, session


@dataclass
class Slices:
    """One hub's slices: flows per second and CPU per flow (ms), in order."""

    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


def flows_served(slices: int, flows: int) -> int:
    """The flows each hub serves in `alternating_slices`, its warm-up's with them."""
    return WARM_UP_FLOWS + slices * flows


async def alternating_slices(
    hubs: dict[str, HubProcess],
    workload: Workload,
    ids: str,
    slices: int,
    flows: int,
    in_flight: int,
    lookups: Lookups,
) -> dict[str, Slices]:
    """Each hub (two, in the order given) warmed up, then `slices` slices of `flows` each;
    `ids` begins every message id, so that the two hubs' flows never share one."""
    first, second = hubs
    sessions = {name: session(hub.url, in_flight) for name, hub in hubs.items()}
    measured = {name: Slices() for name in hubs}
    try:
        arms = {name: hub_arm(client) for name, client in sessions.items()}
        for name, arm in arms.items():
            await run_bounded(arm, chains(workload, f"{ids}W{name}", WARM_UP_FLOWS, lookups), 8)
        for index in range(slices):
            for name in (first, second) if index % 2 == 0 else (second, first):
                work = chains(workload, f"{ids}S{index:03d}{name}", flows, lookups)
                cpu_before = hubs[name].cpu_seconds_with_children()
                seconds = await run_bounded(arms[name], work, in_flight)
                cpu_seconds = hubs[name].cpu_seconds_with_children() - cpu_before
                measured[name].rates.append(flows / seconds)
                measured[name].cpu_ms.append(cpu_seconds * 1000 / flows)
    finally:
        for client in sessions.values():
            await client.close()
    return measured
