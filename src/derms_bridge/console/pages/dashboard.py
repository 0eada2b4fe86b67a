"""The dashboard: each flow's counts and failures in a window, the schedules, the processes."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from derms_bridge.catalog import BY_KEY, FLOWS
from derms_bridge.console.charts import STACK_ORDER, hourly_charts, latency_chart, ms_text
from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, render
from derms_bridge.engine.operations import flow_counts
from derms_bridge.flows.registry import SCHEDULED_FLOWS
from derms_bridge.schemas.ops import LATENCY_CALLS, WINDOWS

router = APIRouter(dependencies=CSRF_CHECKED)


def _window(value: str | None) -> str:
    return value if value in WINDOWS else "24h"


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    window = _window(request.query_params.get("window"))
    now = datetime.now(UTC)
    since = now - WINDOWS[window]
    operations = state.hub.operations
    # The window read once: the flows' counts are its hours' summed.
    hours = await operations.counts_by_hour(since)
    counts = flow_counts(hours)
    failures = await operations.failing_now(since)
    runs = await operations.scheduled_runs(SCHEDULED_FLOWS, since)
    charts = hourly_charts(hours, since, now)
    latencies = await operations.latency_by_target(since)
    return render(
        request,
        "dashboard.html",
        {
            "window": window,
            "windows": list(WINDOWS),
            "flows": FLOWS,
            "counts": counts,
            "failures": failures,
            "charts": charts,
            "stack_order": STACK_ORDER,
            "latency_chart": latency_chart(latencies.targets),
            "latency_newest_only": LATENCY_CALLS if latencies.newest_only else None,
            "ms_text": ms_text,
            "by_key": BY_KEY,
            "schedules": await state.hub.scheduler.overview(),
            "runs": runs,
            "processes": await state.hub.liveness.alive(),
            "redact": state.redact,
        },
    )
