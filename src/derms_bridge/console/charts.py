"""The dashboard's charts laid out for SVG drawn on the server: no script, no inline style."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from derms_bridge.catalog import FLOWS, FlowInfo
from derms_bridge.schemas.ops import HourCount

#: Bottom to top: what went well under what needs a look.
STACK_ORDER = ("succeeded", "resolved", "skipped", "in_progress", "rejected", "failed")
HOUR = timedelta(hours=1)
#: The plot's size in the SVG's own units; the stylesheet scales the whole drawing.
PLOT_WIDTH = 720
PLOT_HEIGHT = 80


@dataclass(frozen=True)
class Bar:
    """One status's part of one hour's column."""

    status: str
    hour: datetime
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class HourlyChart:
    """One flow's messages per clock hour (UTC) over a window, stacked by status."""

    flow: FlowInfo
    bars: list[Bar]
    #: The busiest hour's count: the top of the scale.
    peak: int
    first_hour: datetime
    last_hour: datetime


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hourly_charts(counts: list[HourCount], since: datetime, now: datetime) -> list[HourlyChart]:
    """A chart per flow with instances in the window, in the catalog's order; the hours run
    from the one `since` falls in to the one `now` falls in."""
    first, last = _hour_of(since), _hour_of(now)
    hours = int((last - first) / HOUR) + 1
    slot = PLOT_WIDTH / hours
    by_flow: dict[str, dict[datetime, dict[str, int]]] = {}
    for c in counts:
        by_flow.setdefault(c.flow, {}).setdefault(c.hour, {})[c.status] = c.count
    charts = []
    for flow in FLOWS:
        columns = by_flow.get(flow.key)
        if not columns:
            continue
        peak = max(sum(statuses.values()) for statuses in columns.values())
        bars = []
        for hour, statuses in sorted(columns.items()):
            x = (hour - first) / HOUR * slot + slot * 0.1
            top = float(PLOT_HEIGHT)
            for status in STACK_ORDER:
                count = statuses.get(status, 0)
                if not count:
                    continue
                height = count / peak * PLOT_HEIGHT
                top -= height
                bars.append(Bar(status, hour, count, x, top, slot * 0.8, height))
        charts.append(HourlyChart(flow, bars, peak, first, last))
    return charts
