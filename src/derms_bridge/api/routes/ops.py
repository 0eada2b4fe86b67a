"""The operations API: find instances, read their activity, resubmit them, send a file
run's acknowledgement again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from derms_bridge.api.deps import DOCUMENTED_AUTH, HubDep, PrincipalDep
from derms_bridge.api.guard import guarded
from derms_bridge.catalog import FLOWS, FlowInfo, flows_named
from derms_bridge.engine.operations import NoAcknowledgementToSend
from derms_bridge.engine.runner import InstanceNotFound, NotResubmittable
from derms_bridge.schemas.common import parse_iso_datetime
from derms_bridge.schemas.ops import (
    BUSINESS_KEY_CHARS,
    INSTANCE_ID_CHARS,
    MAX_OFFSET,
    WINDOWS,
    HubProcessView,
    InstanceDetail,
    InstanceFilter,
    InstancePage,
    InstanceStatus,
    LatencyByTarget,
    PageCursor,
    Window,
)

#: An instance's id (a UUID); a longer one names no instance.
InstanceId = Annotated[
    str, Path(min_length=1, max_length=INSTANCE_ID_CHARS, pattern="^[0-9A-Za-z-]+$")
]


def _moment(value: Any) -> Any:
    # As the document says (format date-time): pydantic alone would take "0.0" (a Unix
    # time) or a date-time without an offset.
    return parse_iso_datetime(value) if isinstance(value, str) else value


#: A date-time with an offset, ISO 8601.
Moment = Annotated[datetime, BeforeValidator(_moment)]
FLOW_NAMES = sorted({name for flow in FLOWS for name in (flow.key, flow.identifier)})
_NO_SUCH_INSTANCE: dict[int | str, dict[str, Any]] = {404: {"description": "no such instance"}}

router = APIRouter(
    prefix="/ops",
    route_class=guarded("operator", body="none"),
    dependencies=DOCUMENTED_AUTH,
    tags=["Operations"],
)


@router.get(
    "/instances",
    response_model=InstancePage,
    responses={422: {"description": "a filter the hub cannot read; `errors` names it"}},
)
async def list_instances(
    hub: HubDep,
    flow: Annotated[
        str | None,
        Query(
            description="flow key or identifier",
            json_schema_extra={"enum": FLOW_NAMES},
        ),
    ] = None,
    status: InstanceStatus | None = None,
    key: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=BUSINESS_KEY_CHARS,
            pattern="^[^\\x00]+$",
            description="a business identifier: messageId, enrollmentId, ...",
        ),
    ] = None,
    received_from: Moment | None = None,
    received_to: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="the page's `next_cursor`, for the page after it: as fast however "
            "deep, and no instance received meanwhile shifts it (`offset` counts from it)",
        ),
    ] = None,
) -> InstancePage:
    """Newest first. `total` counts up to 10,000 (`total_exact` false past it)."""
    after = None
    if cursor is not None:
        try:
            after = PageCursor.of(cursor)
        except ValueError as exc:
            raise RequestValidationError(
                [{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]
            ) from None
    flows: list[FlowInfo] = []
    if flow is not None:
        flows = flows_named(flow)
        if not flows:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "flow"),
                        "msg": f"no flow is called {flow!r}",
                        "type": "value_error",
                    }
                ]
            )
    return await hub.operations.search(
        InstanceFilter(
            flows=tuple(f.key for f in flows),
            status=status,
            business_key=key,
            received_from=received_from,
            received_to=received_to,
            limit=limit,
            offset=offset,
            after=after,
        )
    )


@router.get("/instances/{instance_id}", response_model=InstanceDetail, responses=_NO_SUCH_INSTANCE)
async def show_instance(instance_id: InstanceId, hub: HubDep) -> InstanceDetail:
    detail = await hub.operations.detail(instance_id)
    if detail is None:
        raise HTTPException(404, f"instance {instance_id} does not exist")
    return detail


@router.get(
    "/instances/{instance_id}/set-aside.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}},
        404: {"description": "no such instance, or not a file flow's"},
    },
)
async def set_aside_rows(instance_id: InstanceId, hub: HubDep) -> StreamingResponse:
    """A file flow's rows set aside (flows 7, 8), every one as it came, under the header of
    the flow's file: correct them and send the file again."""
    rows = await hub.operations.set_aside_csv(instance_id)
    if rows is None:
        raise HTTPException(404, f"instance {instance_id} is not a file flow's")
    return StreamingResponse(
        rows,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{instance_id}-set-aside.csv"'},
    )


@router.post(
    "/instances/{instance_id}/resubmit",
    response_model=InstanceDetail,
    responses={
        **_NO_SUCH_INSTANCE,
        409: {"description": "the instance may not run again (it succeeded, or runs now)"},
    },
)
async def resubmit_instance(instance_id: InstanceId, principal: PrincipalDep, hub: HubDep) -> Any:
    """Run the flow again from the stored payload; the new instance names the old one. A
    file flow's instance runs again itself, sending only the segments CPMCS has not taken."""
    try:
        outcome = await hub.engine.resubmit(instance_id, caller=principal.name)
    except InstanceNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NotResubmittable as exc:
        raise HTTPException(409, str(exc)) from None
    return await hub.operations.detail(outcome.instance_id)


@router.post(
    "/instances/{instance_id}/acknowledgement",
    response_model=InstanceDetail,
    status_code=202,
    responses={
        202: {"description": "the acknowledgement is due again; the instance as it stands"},
        404: {"description": "no such instance"},
        409: {"description": "not a file run (flows 7, 8) that has finished"},
    },
)
async def send_acknowledgement_again(instance_id: InstanceId, hub: HubDep) -> Any:
    """Send DERMS a finished file run's acknowledgement again (flows 7, 8), for one DERMS
    lost: the same MsgAck, code and responses as it went, to the DERMS connection that sent
    the file; no row goes again. A worker sends it at once (`file.state` is `acking_again`
    until then); its call is an activity of the instance, which ends `succeeded` or
    `failed` as DERMS takes it."""
    try:
        await hub.operations.acknowledge_again(instance_id)
    except InstanceNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NoAcknowledgementToSend as exc:
        raise HTTPException(409, str(exc)) from None
    return await hub.operations.detail(instance_id)


@router.get("/processes", response_model=list[HubProcessView])
async def list_processes(hub: HubDep) -> list[HubProcessView]:
    """The hub processes (serve, worker, run) sharing this database that were heard from
    within `processes.stopped_after_seconds`, oldest first."""
    return [HubProcessView.model_validate(found) for found in await hub.liveness.alive()]


@router.get("/latency", response_model=LatencyByTarget)
async def latency_per_target(hub: HubDep, window: Window = "24h") -> LatencyByTarget:
    """How long the calls to each outside system took over the last `window`, answered or
    not, as the instances' activities keep them (the newest 20,000 calls of the window at
    most): the console dashboard's "Latency per target" chart. A target with no call in the
    window is absent. Emails are not timed: the hub keeps only an email that failed, as an
    activity of its instance."""
    since = datetime.now(UTC) - WINDOWS[window]
    found = await hub.operations.latency_by_target(since)
    return LatencyByTarget(
        window=window, since=since, targets=found.targets, newest_only=found.newest_only
    )
