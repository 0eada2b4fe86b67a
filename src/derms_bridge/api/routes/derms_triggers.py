"""The routes Edge DERMS calls, at the reference's own URIs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from derms_bridge.api.deps import DOCUMENTED_AUTH, EngineDep, PrincipalDep
from derms_bridge.api.guard import guarded
from derms_bridge.flows.registry import ENROLLMENT_REQUEST
from derms_bridge.schemas.common import AckMessage
from derms_bridge.schemas.derms import EnrollmentRequestMessage

router = APIRouter(route_class=guarded("derms"), dependencies=DOCUMENTED_AUTH, tags=["DERMS"])


@router.post(
    "/enroll-to-dacs",
    response_model=AckMessage,
    response_model_exclude_none=True,
    summary="Flow 1, Enrollment Request",
    responses={401: {}, 413: {}, 415: {}, 422: {}},
)
async def enroll_to_dacs(
    message: EnrollmentRequestMessage,
    engine: EngineDep,
    principal: PrincipalDep,
    response: Response,
) -> Any:
    """Each enrollment request goes to CPMCS enrollProgram; the MsgAck has one response each,
    in the order received."""
    outcome = await engine.run_sync(ENROLLMENT_REQUEST, message, caller=principal.name)
    response.headers["X-Instance-Id"] = outcome.instance_id
    return outcome.reply
