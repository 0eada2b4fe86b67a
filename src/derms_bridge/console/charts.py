"""The dashboard's charts laid out for SVG drawn on the server: no script, no inline style."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from derms_bridge.catalog import FLOWS, FlowInfo
from derms_bridge.schemas.ops import HourCount, TargetLatency

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


#: The latency chart's bars in SVG units: a target's row, and the width of the slowest
#: (its numbers are written to the right of the plot).
LATENCY_ROW = 24
LATENCY_PLOT = 520


@dataclass(frozen=True)
class LatencyRow:
    """One target's bars: its 95th percentile drawn behind its median, to the same scale."""

    latency: TargetLatency
    y: float
    p50_width: float
    p95_width: float


@dataclass(frozen=True)
class LatencyChart:
    rows: list[LatencyRow]
    #: The slowest 95th percentile: the right end of the scale.
    peak_ms: float
    #: Where the scale is written, under the rows.
    bottom: float


def latency_chart(targets: list[TargetLatency]) -> LatencyChart:
    """A bar per target from 0 to its 95th percentile, with its median over it, in the
    order given; the slowest 95th percentile spans the plot."""
    peak = max((t.p95_ms for t in targets), default=0.0)
    rows = [
        LatencyRow(
            t,
            index * LATENCY_ROW,
            t.p50_ms / peak * LATENCY_PLOT if peak else 0.0,
            t.p95_ms / peak * LATENCY_PLOT if peak else 0.0,
        )
        for index, t in enumerate(targets)
    ]
    return LatencyChart(rows, peak, len(rows) * LATENCY_ROW)


def ms_text(milliseconds: float) -> str:
    """A duration in milliseconds to one decimal."""
    return f"{milliseconds:,.1f} ms"


#: Left to right: what is done, then what is under way, then what is left.
SEGMENT_ORDER = ("accepted", "failed", "sending", "pending")
BAR_WIDTH = 720


@dataclass(frozen=True)
class SegmentPart:
    """The segments of a file at one state, as a stretch of its bar."""

    state: str
    count: int
    x: float
    width: float


#: A file at work whose latest call is this old is shown as quiet: its pace and time left
#: are as of that call, and a stalled file would otherwise look on its way.
QUIET_AFTER = timedelta(minutes=1)
#: A file job's states while it still has work to do.
FILE_AT_WORK = ("queued", "running")


@dataclass(frozen=True)
class FilePace:
    """A file's segments by state, and its pace: the rows sent per second from its receipt
    to its latest call (None before any row went), and at that pace the seconds its rows
    still to send take (None when none are left or no row went yet); for a file still at
    work whose latest call (or receipt) is older than QUIET_AFTER, how long it has been
    quiet."""

    parts: list[SegmentPart]
    rows_per_second: float | None
    seconds_left: float | None
    quiet_seconds: float | None = None


def file_pace(
    segments: dict[str, int],
    rows_sent: int,
    total_rows: int,
    received_at: datetime,
    latest_call: datetime | None,
    now: datetime | None = None,
) -> FilePace:
    """`now` is given for a file still at work, None for one that ended."""
    total = sum(segments.values())
    parts = []
    x = 0.0
    for state in SEGMENT_ORDER:
        count = segments.get(state, 0)
        if count:
            width = count / total * BAR_WIDTH
            parts.append(SegmentPart(state, count, x, width))
            x += width
    seconds = (latest_call - received_at).total_seconds() if latest_call else 0.0
    rate = rows_sent / seconds if rows_sent and seconds > 0 else None
    left = total_rows - rows_sent
    quiet = now - (latest_call or received_at) if now is not None else None
    return FilePace(
        parts,
        rate,
        left / rate if rate and left > 0 else None,
        quiet.total_seconds() if quiet is not None and quiet >= QUIET_AFTER else None,
    )


def rate_text(rows_per_second: float) -> str:
    """A pace to one decimal, or to two significant digits when slower than 0.1 row/s."""
    if rows_per_second >= 0.1:
        return f"{rows_per_second:,.1f}"
    return f"{rows_per_second:.2g}"


def duration_text(seconds: float) -> str:
    """Whole seconds as an operator reads them: "42 s", "3 min 5 s", "2 h 10 min"."""
    whole = int(seconds)
    if whole < 1:
        return "less than 1 s"
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
