"""The dashboard's and the file page's charts: what each bar stands for and where it goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from derms_bridge.console.charts import (
    LATENCY_PLOT,
    LATENCY_ROW,
    PLOT_HEIGHT,
    PLOT_WIDTH,
    duration_text,
    file_pace,
    hourly_charts,
    latency_chart,
    ms_text,
    rate_text,
)
from derms_bridge.schemas.ops import HourCount, TargetLatency

NOW = datetime(2026, 12, 4, 18, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_an_hour_stacks_its_statuses_good_at_the_bottom_scaled_to_the_busiest_hour() -> None:
    at_17 = datetime(2026, 12, 4, 17, tzinfo=UTC)
    at_18 = datetime(2026, 12, 4, 18, tzinfo=UTC)
    counts = [
        HourCount("enrollment_request", "failed", at_17, 1),
        HourCount("enrollment_request", "succeeded", at_17, 3),
        HourCount("enrollment_request", "succeeded", at_18, 2),
        HourCount("device_status_check", "rejected", at_18, 5),
    ]

    [enrollment, status_check] = hourly_charts(counts, NOW - timedelta(hours=2), NOW)

    assert enrollment.flow.key == "enrollment_request"
    assert status_check.flow.key == "device_status_check"
    assert enrollment.peak == 4
    assert (enrollment.first_hour, enrollment.last_hour) == (
        NOW.replace(minute=0) - 2 * HOUR,
        at_18,
    )
    succeeded_17, failed_17, succeeded_18 = enrollment.bars
    assert (succeeded_17.status, succeeded_17.count) == ("succeeded", 3)
    assert succeeded_17.y + succeeded_17.height == PLOT_HEIGHT
    assert failed_17.y + failed_17.height == pytest.approx(succeeded_17.y)
    assert failed_17.height == pytest.approx(PLOT_HEIGHT / 4)
    # Three hours in the window, 16:00 to 18:00: 17:00 is the second slot.
    assert succeeded_17.x == pytest.approx(PLOT_WIDTH / 3 * 1.1)
    assert succeeded_18.x == pytest.approx(PLOT_WIDTH / 3 * 2.1)
    assert status_check.peak == 5


def test_a_file_pace_from_its_receipt_to_its_latest_call() -> None:
    pace = file_pace(
        {"pending": 3, "sending": 1, "accepted": 4, "failed": 0},
        rows_sent=400,
        total_rows=800,
        received_at=NOW,
        latest_call=NOW + timedelta(seconds=80),
    )

    assert [(p.state, p.count, p.x, p.width) for p in pace.parts] == [
        ("accepted", 4, 0.0, 360.0),
        ("sending", 1, 360.0, 90.0),
        ("pending", 3, 450.0, 270.0),
    ]
    assert pace.rows_per_second == 5.0
    assert pace.seconds_left == 80.0


@pytest.mark.parametrize(
    ("rows_sent", "latest_call"),
    [(0, NOW + timedelta(seconds=5)), (10, None), (10, NOW)],
)
def test_a_file_with_no_row_sent_or_no_call_yet_has_no_pace(
    rows_sent: int, latest_call: datetime | None
) -> None:
    pace = file_pace({"pending": 2}, rows_sent, 20, NOW, latest_call)
    assert (pace.rows_per_second, pace.seconds_left) == (None, None)


def test_a_file_with_every_row_sent_has_no_time_left() -> None:
    pace = file_pace({"accepted": 2}, 20, 20, NOW, NOW + timedelta(seconds=4))
    assert (pace.rows_per_second, pace.seconds_left) == (5.0, None)


def test_a_file_at_work_whose_latest_call_is_a_minute_old_is_quiet() -> None:
    latest_call = NOW + timedelta(seconds=80)

    busy = file_pace({"pending": 2}, 10, 20, NOW, latest_call, latest_call + timedelta(seconds=59))
    stalled = file_pace(
        {"pending": 2}, 10, 20, NOW, latest_call, latest_call + timedelta(minutes=5)
    )
    never_called = file_pace({"pending": 2}, 0, 20, NOW, None, NOW + timedelta(minutes=2))
    ended = file_pace({"failed": 2}, 10, 20, NOW, latest_call, None)

    assert busy.quiet_seconds is None
    assert (stalled.quiet_seconds, stalled.rows_per_second) == (300.0, 0.125)
    assert never_called.quiet_seconds == 120.0
    assert ended.quiet_seconds is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "less than 1 s"), (42.9, "42 s"), (185, "3 min 5 s"), (7800, "2 h 10 min")],
)
def test_a_duration_reads_in_the_largest_units_that_fit(seconds: float, shown: str) -> None:
    assert duration_text(seconds) == shown


@pytest.mark.parametrize(("rate", "shown"), [(1234.56, "1,234.6"), (0.1, "0.1"), (0.0123, "0.012")])
def test_a_rate_keeps_its_digits_when_slow(rate: float, shown: str) -> None:
    assert rate_text(rate) == shown


def test_latency_bars_are_scaled_to_the_slowest_95th_percentile() -> None:
    cpmcs = TargetLatency(target="CPMCS", calls=40, failed=2, p50_ms=50.0, p95_ms=200.0)
    ftp = TargetLatency(target="ftp", calls=3, failed=0, p50_ms=400.0, p95_ms=800.0)

    chart = latency_chart([cpmcs, ftp])

    assert chart.peak_ms == 800.0
    assert [(r.latency.target, r.y) for r in chart.rows] == [("CPMCS", 0), ("ftp", LATENCY_ROW)]
    assert [(r.p50_width, r.p95_width) for r in chart.rows] == [
        (LATENCY_PLOT / 16, LATENCY_PLOT / 4),
        (LATENCY_PLOT / 2, LATENCY_PLOT),
    ]
    assert chart.bottom == 2 * LATENCY_ROW


def test_calls_that_all_took_no_time_draw_no_bar() -> None:
    instant = TargetLatency(target="ftp", calls=1, failed=1, p50_ms=0.0, p95_ms=0.0)

    [row] = latency_chart([instant]).rows

    assert (row.p50_width, row.p95_width) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("milliseconds", "shown"), [(0.04, "0.0 ms"), (12.345, "12.3 ms"), (2350.0, "2,350.0 ms")]
)
def test_a_duration_is_shown_in_milliseconds_to_one_decimal(
    milliseconds: float, shown: str
) -> None:
    assert ms_text(milliseconds) == shown
