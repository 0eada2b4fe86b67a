"""Flow 7, Event Device Reservation: the trigger's message and what CPMCS receives per segment."""

from __future__ import annotations

from pydantic import Field

from derms_bridge.schemas.common import IsoDateTime, Wire


class ReservationMessage(Wire):
    """The `message` part of the trigger."""

    drmsInstanceId: str | None = None
    messageId: str = Field(min_length=1, max_length=120)
    eventId: str = Field(min_length=1, max_length=120)
    stageId: str | None = None
    eventType: str | None = None
    eventStartDateTime: IsoDateTime
    eventEndDateTime: IsoDateTime


class ReservedDevice(Wire):
    nicId: str = Field(max_length=100)
    headEndSystem: str = Field(max_length=50)
    reservationStartDateTime: str
    reservationEndDateTime: str


class ReserveDeviceRequest(Wire):
    eventExternalIdentifier: str = Field(max_length=120)
    eventStartDateTime: str
    eventEndDateTime: str
    deviceList: list[ReservedDevice]
