"""The file flows' trigger routes (7, 8): a JSON `message` and a CSV `file`, multipart.

The body is parsed as it streams in (api/uploads.py), so the intake checks and keeps the
file while it arrives. The answer is 202 with the instance id as soon as the file is
kept; DERMS hears the outcome from the flow's acknowledgement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from derms_bridge import metrics
from derms_bridge.api.deps import DOCUMENTED_AUTH, HubDep, PrincipalDep
from derms_bridge.api.guard import guarded
from derms_bridge.api.problems import refused
from derms_bridge.api.refusals import KEPT
from derms_bridge.api.uploads import BadUpload, multipart_upload, openapi_form
from derms_bridge.engine.uploads import FileRefused
from derms_bridge.flows.ports import FileFlow
from derms_bridge.flows.registry import FILE_FLOWS

router = APIRouter(
    route_class=guarded("derms", body="multipart"),
    dependencies=DOCUMENTED_AUTH,
    tags=["Triggers from DERMS"],
)


def _endpoint(flow: FileFlow[Any]) -> Callable[..., Awaitable[JSONResponse]]:
    async def trigger(request: Request, principal: PrincipalDep, hub: HubDep) -> JSONResponse:
        try:
            async with multipart_upload(request, request.app.state.max_file_bytes) as upload:
                received = await hub.intake.receive(
                    flow, upload.message, upload.file, caller=principal.name
                )
        except BadUpload as bad:
            return await refused(request, bad.status, bad.detail, errors=bad.errors)
        except FileRefused as refusal:
            return await refused(request, 422, str(refusal), errors=refusal.errors)
        if not received.resumed:
            metrics.instance_received(flow.info.key)
        return JSONResponse(
            {
                "instanceId": received.instance_id,
                "resumed": received.resumed,
                "acknowledgedAgain": received.acknowledged_again,
            },
            status_code=202,
            headers={"X-Instance-Id": received.instance_id},
        )

    trigger.__doc__ = (
        f"Flow {flow.info.number}, {flow.info.title} ({flow.info.identifier}): the file is "
        "kept in segments and sent to CPMCS; DERMS gets one acknowledgement."
    )
    return trigger


for _flow in FILE_FLOWS.values():
    router.add_api_route(
        _flow.route,
        _endpoint(_flow),
        methods=["POST"],
        status_code=202,
        summary=f"Flow {_flow.info.number}, {_flow.info.title}",
        operation_id=_flow.info.key,
        openapi_extra=openapi_form("the JSON message", "the CSV, header " + ",".join(_flow.header)),
        responses={
            400: {"description": "the body is not readable as multipart/form-data" + KEPT},
            401: {"description": "no credential, or not DERMS's: nothing is kept"},
            413: {"description": "the body is over segments.max_file_bytes" + KEPT},
            415: {"description": "the body is not multipart/form-data" + KEPT},
            422: {
                "description": "the message or the file's header does not fit the contract" + KEPT
            },
        },
    )
