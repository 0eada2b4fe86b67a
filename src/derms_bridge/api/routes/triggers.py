"""The trigger routes, one per request/response flow, made from the flow registry.

DERMS calls the hub at the reference's own URIs; CPMCS's outbound messages arrive
at /cpmcs/outbound/{message type}. Each route is guarded for its caller's role.
"""

# No `from __future__ import annotations` here: FastAPI reads each endpoint's body
# type from its annotations, which name a model chosen per flow at import time.

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from derms_bridge.api.deps import DOCUMENTED_AUTH
from derms_bridge.api.guard import guarded
from derms_bridge.api.refusals import KEPT
from derms_bridge.credentials import Principal
from derms_bridge.engine.runner import FlowEngine
from derms_bridge.flows.ports import SyncFlow
from derms_bridge.flows.registry import SYNC_FLOWS
from derms_bridge.schemas.problems import PROBLEM_JSON

_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "the body is over limits.max_json_body_bytes" + KEPT},
    415: {"description": "the body is not application/json" + KEPT},
    422: {"description": "the body does not match the contract; `errors` names each field" + KEPT},
}
_MISCONFIGURED: dict[int | str, dict[str, Any]] = {
    500: {
        "description": "configuration-error: the hub's own configuration stopped the message "
        "before any target was called (a lookup without the row it needs, a Routing row "
        "naming no connection)"
    },
}
_FAULTS: dict[int | str, dict[str, Any]] = {
    502: {"description": "the target failed; the error email went out"},
    504: {"description": "the target did not answer in time"},
}


def _endpoint(flow: SyncFlow[Any, Any]) -> Any:
    message_model = flow.message_model

    # The engine and the caller read off the request, not as dependencies: FastAPI's solving
    # of each cost more than the lookup, on the hub's busiest routes.
    async def trigger(message: message_model, request: Request) -> Any:  # type: ignore[valid-type]
        engine: FlowEngine = request.app.state.engine
        principal: Principal = request.state.principal
        outcome = await engine.run_sync(flow, message, caller=principal.name)
        return JSONResponse(
            outcome.reply,
            status_code=outcome.http_status,
            media_type=PROBLEM_JSON if outcome.is_fault else None,
            headers={"X-Instance-Id": outcome.instance_id},
        )

    trigger.__doc__ = f"Flow {flow.info.number}, {flow.info.title} ({flow.info.identifier})."
    return trigger


def _router(role: str, tag: str) -> APIRouter:
    router = APIRouter(route_class=guarded(role), dependencies=DOCUMENTED_AUTH, tags=[tag])  # type: ignore[arg-type]
    for flow in SYNC_FLOWS.values():
        if flow.route is None or flow.role != role:
            continue
        router.add_api_route(
            flow.route,
            _endpoint(flow),
            methods=["POST"],
            response_model=flow.reply_model,
            response_model_exclude_none=True,
            summary=f"Flow {flow.info.number}, {flow.info.title}",
            operation_id=flow.info.key,
            responses={**_REFUSALS, **_MISCONFIGURED, **(_FAULTS if role == "cpmcs" else {})},
        )
    return router


derms_router = _router("derms", "Triggers from DERMS")
cpmcs_router = _router("cpmcs", "Outbound messages from CPMCS")
