"""The schedules, each row following its run, and a scheduled flow run now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from derms_bridge.catalog import BY_KEY
from derms_bridge.console.web import (
    CSRF_CHECKED,
    ROOT,
    ConsoleState,
    OperatorDep,
    StateDep,
    is_htmx,
    render,
)
from derms_bridge.engine.schedules import AlreadyRunning, UnknownScheduledFlow
from derms_bridge.schemas.schedules import ScheduleView

router = APIRouter(dependencies=CSRF_CHECKED)


async def _schedule_of(state: ConsoleState, flow: str) -> ScheduleView | None:
    return next((each for each in await state.hub.scheduler.overview() if each.flow == flow), None)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    return render(
        request,
        "schedules.html",
        {
            "schedules": await state.hub.scheduler.overview(),
            "by_key": BY_KEY,
            "redact": state.redact,
        },
    )


@router.get("/schedules/{flow}", response_class=HTMLResponse)
async def schedule_row(
    request: Request, flow: str, state: StateDep, operator: OperatorDep
) -> Response:
    """A schedule's row as it stands now: what a running row asks for until its run ends."""
    if not is_htmx(request):
        return RedirectResponse(ROOT + "/schedules", status_code=303)
    found = await _schedule_of(state, flow)
    if found is None:
        return render(
            request, "not_found.html", {"what": f"scheduled flow {flow}"}, status_code=404
        )
    return render(
        request,
        "_schedule_row.html",
        {"schedule": found, "by_key": BY_KEY, "redact": state.redact},
    )


@router.post("/schedules/{flow}/run", response_class=HTMLResponse)
async def run_schedule_now(
    request: Request, flow: str, state: StateDep, operator: OperatorDep
) -> Response:
    """Start the flow now; the answer says which instance, and replaces the flow's row so that
    it follows the run until it ends."""
    try:
        started = await state.hub.scheduler.run_now(flow, caller=operator)
    except UnknownScheduledFlow as exc:
        return render(request, "_run_started.html", {"refused": str(exc)}, status_code=404)
    except AlreadyRunning as exc:
        return render(
            request,
            "_run_started.html",
            {
                "running": exc.instance_id,
                "schedule": await _schedule_of(state, exc.flow),
                "by_key": BY_KEY,
                "redact": state.redact,
            },
            status_code=409,
        )
    return render(
        request,
        "_run_started.html",
        {
            "started": started.instance_id,
            "schedule": await _schedule_of(state, started.flow),
            "by_key": BY_KEY,
            "redact": state.redact,
        },
    )
