"""CPMCS's REST services, as the flows call them."""

from __future__ import annotations

from pydantic import ValidationError

from derms_bridge.connectors.http import Answer, CallObserver, HttpConnection, model_reader
from derms_bridge.errors import BusinessError
from derms_bridge.schemas.cpmcs import (
    CpmcsErrorBody,
    EnrollProgramRequest,
    EnrollProgramResponse,
)

ENROLL = "/rest/apis/cross/digitalAssets/programEnrollments/enroll"


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

    async def enroll_program(self, body: EnrollProgramRequest) -> EnrollProgramResponse:
        operation = "enrollProgram"
        return await self._connection.call(
            operation,
            "POST",
            ENROLL,
            json=body.model_dump(mode="json", exclude_none=True),
            read=model_reader(EnrollProgramResponse, "CPMCS", operation),
            observer=self._observer,
            business_error=cpmcs_business_error,
        )
