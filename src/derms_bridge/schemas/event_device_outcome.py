"""Flow 8, Event Device Outcome: the trigger's message and what CPMCS receives per segment."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from pydantic import Field

from derms_bridge.schemas.common import Wire

#: The columns of the file DERMS sends, in order (R: the file's CSV layout).
OUTCOME_HEADER = (
    "recordId",
    "eventId",
    "nicId",
    "headEndSystemId",
    "outcome",
    "participationStartDateTime",
    "participationEndDateTime",
    "errorMessage",
)


class OutcomeMessage(Wire):
    """The `message` part of the trigger."""

    drmsInstanceId: str | None = None
    messageId: str = Field(min_length=1, max_length=120)
    fileName: str | None = Field(None, max_length=255)


# A segment's body is built for a thousand rows at a time, so it is a TypedDict: the
# rows were checked against CPMCS's limits already.


class DeviceOutcome(TypedDict):
    eventExternalIdentifier: str
    nicId: str
    headEndSystem: str
    outcome: str
    participationStartDateTime: str
    participationEndDateTime: str
    errorMessage: NotRequired[str]


class PostEventOutcomeRequest(TypedDict):
    postOutcomeList: list[DeviceOutcome]
