"""Flow 6, Program Event Status Update: DERMS's stage status and CPMCS's X1-ProgramEvent bodies.

The limits are CPMCS's (contract, "CPMCS field limits"), checked at the trigger so that
a value CPMCS would refuse is answered 422 naming the field and never sent.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from derms_bridge.schemas.common import CpmcsDateTime, Wire

#: The stageStatus that creates the program event; every other one is a lifecycle action.
SCHEDULED = "SCHEDULED"

#: CPMCS's eventExternalIdentifier, externalIdentifier and programExternalIdentifier.
IDENTIFIER_LIMIT = 120
#: CPMCS's actionProgramEvent cancelReason.
CANCEL_REASON_LIMIT = 254

#: What a SCHEDULED stage must carry for createProgramEvent, besides eventId and stageId.
NEEDED_TO_CREATE = ("programId", "eventType", "startDateTimeISO", "endDateTimeISO")


class StageStatusMessage(Wire):
    """Flow 6's trigger body: one stage of a DERMS event and its new status."""

    # DERMS's message ids, as in flow 1; the store keeps business keys up to 200 characters.
    messageId: str = Field(min_length=1, max_length=120)
    eventId: str = Field(
        min_length=1, max_length=IDENTIFIER_LIMIT, description="becomes eventExternalIdentifier"
    )
    stageId: str = Field(
        min_length=1, max_length=IDENTIFIER_LIMIT, description="becomes externalIdentifier"
    )
    programId: str | None = Field(
        None,
        min_length=1,
        max_length=IDENTIFIER_LIMIT,
        description="becomes programExternalIdentifier; needed when SCHEDULED",
    )
    eventType: str | None = Field(
        None, min_length=1, description="through EventType; needed when SCHEDULED"
    )
    stageStatus: str = Field(
        min_length=1, description="SCHEDULED creates the event; any other, through StageStatus"
    )
    startDateTimeISO: CpmcsDateTime | None = Field(None, description="needed when SCHEDULED")
    endDateTimeISO: CpmcsDateTime | None = Field(None, description="needed when SCHEDULED")
    cancelReason: str | None = Field(None, max_length=CANCEL_REASON_LIMIT)

    @model_validator(mode="after")
    def _scheduled_has_what_create_needs(self) -> Self:
        if self.stageStatus != SCHEDULED:
            return self
        missing = [name for name in NEEDED_TO_CREATE if getattr(self, name) is None]
        if missing:
            # The message names every field, since a model-level error carries no location.
            raise PydanticCustomError(
                "scheduled_needs",
                "a SCHEDULED stage needs {fields} to create the program event",
                {"fields": ", ".join(missing)},
            )
        return self

    @property
    def is_scheduled(self) -> bool:
        return self.stageStatus == SCHEDULED


class CreateProgramEventRequest(Wire):
    """CPMCS X1-ProgramEvent createProgramEvent (POST /)."""

    eventExternalIdentifier: str = Field(max_length=IDENTIFIER_LIMIT)
    externalIdentifier: str = Field(max_length=IDENTIFIER_LIMIT)
    programExternalIdentifier: str = Field(max_length=IDENTIFIER_LIMIT)
    programEventCategory: str
    startDateTime: str
    endDateTime: str


class ActionProgramEventRequest(Wire):
    """CPMCS X1-ProgramEvent actionProgramEvent (POST /lifecycle)."""

    action: str
    eventExternalIdentifier: str = Field(max_length=IDENTIFIER_LIMIT)
    externalIdentifier: str = Field(max_length=IDENTIFIER_LIMIT)
    cancelReason: str | None = Field(None, max_length=CANCEL_REASON_LIMIT)
