"""Flow 7, Event Device Reservation: the trigger's message and what CPMCS receives per segment."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from pydantic import Field

from derms_bridge.schemas.common import CpmcsDateTime, Wire

#: The columns of the file DERMS sends, in order (R: the file's CSV layout).
RESERVATION_HEADER = (
    "recordId",
    "nicId",
    "headEndSystemId",
    "reservationStartDateTime",
    "reservationEndDateTime",
)


class ReservationMessage(Wire):
    """The `message` part of the trigger."""

    drmsInstanceId: str | None = None
    messageId: str = Field(min_length=1, max_length=120)
    eventId: str = Field(min_length=1, max_length=120)
    stageId: str | None = None
    eventType: str | None = None
    eventStartDateTime: CpmcsDateTime
    eventEndDateTime: CpmcsDateTime


# A segment's body is built for a thousand rows at a time, so it is a TypedDict: the
# rows were checked against CPMCS's limits already, and a model per device would cost
# more than sending it (bench/device_reservation.py).


class ReservedDevice(TypedDict):
    nicId: str
    headEndSystem: str
    # Left out when DERMS leaves them empty: CPMCS then applies the event's end date-time.
    reservationStartDateTime: NotRequired[str]
    reservationEndDateTime: NotRequired[str]


class ReserveDeviceRequest(TypedDict):
    eventExternalIdentifier: str
    eventStartDateTime: str
    eventEndDateTime: str
    deviceList: list[ReservedDevice]
