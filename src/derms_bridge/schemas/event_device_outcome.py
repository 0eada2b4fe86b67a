"""Flow 8, Event Device Outcome: the trigger's message and what CPMCS receives per segment."""

from __future__ import annotations

from pydantic import Field

from derms_bridge.schemas.common import Wire


class OutcomeMessage(Wire):
    """The `message` part of the trigger."""

    drmsInstanceId: str | None = None
    messageId: str = Field(min_length=1, max_length=120)
    fileName: str | None = Field(None, max_length=255)


class DeviceOutcome(Wire):
    eventExternalIdentifier: str = Field(max_length=120)
    nicId: str = Field(max_length=100)
    headEndSystem: str = Field(max_length=50)
    outcome: str
    participationStartDateTime: str
    participationEndDateTime: str
    errorMessage: str | None = Field(None, max_length=100)


class PostEventOutcomeRequest(Wire):
    postOutcomeList: list[DeviceOutcome]
