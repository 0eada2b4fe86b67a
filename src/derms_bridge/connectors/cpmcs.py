"""CPMCS's REST services, as the flows call them (paths from the contract)."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from derms_bridge.connectors.http import Answer, CallObserver, HttpConnection, model_reader
from derms_bridge.errors import BusinessError
from derms_bridge.schemas.cpmcs import (
    CpmcsErrorBody,
    EnrollProgramRequest,
    EnrollProgramResponse,
)

M = TypeVar("M", bound=BaseModel)

#: operation -> (method, path); {name} parts are filled from the call's path values.
OPERATIONS: dict[str, tuple[str, str]] = {
    "enrollProgram": ("POST", "/rest/apis/cross/digitalAssets/programEnrollments/enroll"),
    "postAcknowledgement": (
        "POST",
        "/rest/apis/cross/digitalAssets/programEnrollments/postAcknowledgement",
    ),
    "postControllableDeviceStatus": (
        "POST",
        "/rest/apis/cross/digitalAssets/controllableDeviceStatus/response",
    ),
    "createProgramEvent": ("POST", "/rest/apis/cross/service/programEvent/"),
    "actionProgramEvent": ("POST", "/rest/apis/cross/service/programEvent/lifecycle"),
    "reserveDevice": (
        "POST",
        "/rest/apis/cross/service/programEventParticipation/reserveDevice",
    ),
    "postEventOutcome": (
        "POST",
        "/rest/apis/cross/service/programEventParticipation/postEventOutcome",
    ),
    "updateSyncRequest": ("PATCH", "/rest/apis/common/sync/syncRequest/{syncRequestId}"),
    "healthCheck": ("GET", "/rest/apis/common/healthCheck"),
}


def cpmcs_business_error(answer: Answer) -> BusinessError | None:
    """CPMCS's ERROR or VAL-ERROR body on a 400 or 422; anything else is not a business error."""
    if answer.status not in (400, 422):
        return None
    try:
        body = CpmcsErrorBody.model_validate_json(answer.body)
    except ValidationError:
        return None
    return BusinessError(
        body.exception.message or body.status,
        status=body.status,
        message_number=body.exception.messageNumber,
        http_status=answer.status,
    )


class CpmcsClient:
    """CPMCS for one flow run: the shared connection, and where this run's calls are recorded."""

    def __init__(self, connection: HttpConnection, observer: CallObserver | None = None) -> None:
        self._connection = connection
        self._observer = observer

    async def send(self, operation: str, body: BaseModel | None, answer: type[M], **path: str) -> M:
        method, template = OPERATIONS[operation]
        return await self._connection.call(
            operation,
            method,
            template.format(**{k: quote(v, safe="") for k, v in path.items()}),
            json_body=body.model_dump_json(exclude_none=True).encode()
            if body is not None
            else None,
            read=model_reader(answer, "CPMCS", operation),
            observer=self._observer,
            business_error=cpmcs_business_error,
        )

    async def send_json(self, operation: str, body_json: bytes) -> None:
        """Send a body already written as JSON; any 2xx answer is taken, unread."""
        method, path = OPERATIONS[operation]
        await self._connection.call(
            operation,
            method,
            path,
            json_body=body_json,
            read=lambda _answer: None,
            observer=self._observer,
            business_error=cpmcs_business_error,
        )

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
        return await self.send("enrollProgram", body, EnrollProgramResponse)
