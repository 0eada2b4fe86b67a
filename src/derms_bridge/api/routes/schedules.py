"""The operations API of the schedules: what is scheduled, and starting a run now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from derms_bridge.api.deps import DOCUMENTED_AUTH, HubDep, PrincipalDep
from derms_bridge.api.guard import guarded
from derms_bridge.api.problems import problem
from derms_bridge.engine.schedules import AlreadyRunning, UnknownScheduledFlow
from derms_bridge.schemas.schedules import RunStarted, ScheduleView

router = APIRouter(
    prefix="/ops",
    route_class=guarded("operator", body="none"),
    dependencies=DOCUMENTED_AUTH,
    tags=["Operations"],
)


@router.get("/schedules", response_model=list[ScheduleView])
async def list_schedules(hub: HubDep) -> list[ScheduleView]:
    """Every scheduled flow: its cron and time zone, next and last run, and whether it runs."""
    return await hub.scheduler.overview()


@router.post(
    "/schedules/{flow}/run",
    status_code=202,
    response_model=RunStarted,
    responses={
        404: {"description": "no scheduled flow has this name"},
        409: {"description": "the flow is running: the problem's instanceId names that run"},
    },
)
async def run_schedule_now(
    flow: Annotated[
        str, Path(min_length=1, max_length=64, pattern="^[a-z0-9_]+$", description="the flow's key")
    ],
    principal: PrincipalDep,
    hub: HubDep,
) -> Any:
    """Start a run of the flow now, as its schedule would; follow it at /ops/instances/{id}."""
    try:
        started = await hub.scheduler.run_now(flow, caller=principal.name)
    except UnknownScheduledFlow as exc:
        raise HTTPException(404, str(exc)) from None
    except AlreadyRunning as exc:
        return problem(409, str(exc), instance_id=exc.instance_id)
    return RunStarted(instanceId=started.instance_id, flow=started.flow)
