"""Flows 9 and 10, Customer Event Opt Out and Customer Unavailability: CPMCS's X1-EPOPTOMSG
and X1-CUSTUNAVL, and the one body both send to DERMS /dacs-opt-out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from derms_bridge.schemas.common import IsoDateTime, Wire

OptOutType = Literal["EVENT", "UNAVAILABILITY"]
UnavailabilityAction = Literal["ADD", "UPDATE", "DELETE"]


class OptOutDevice(Wire):
    """The device DERMS is to leave out."""

    deviceId: str | None = None
    nicId: str | None = None
    headEndSystem: str | None = None


class OptOutDeviceInfo(OptOutDevice):
    """The device as CPMCS sends it: the device, and the division that routes it."""

    division: str | None = None

    def device(self) -> OptOutDevice:
        return OptOutDevice(
            deviceId=self.deviceId, nicId=self.nicId, headEndSystem=self.headEndSystem
        )


class EventOptOutDetails(Wire):
    messageId: str = Field(min_length=1)
    eventExternalIdentifier: str = Field(min_length=1)
    deviceInfo: OptOutDeviceInfo


class EventOptOutMessage(Wire):
    """CPMCS outbound message X1-EPOPTOMSG (Event Participation Opt Out)."""

    sendDetails: EventOptOutDetails


class UnavailabilityDetails(Wire):
    messageId: str = Field(min_length=1)
    action: UnavailabilityAction
    unavailabilityId: str = Field(min_length=1)
    startDateTime: IsoDateTime | None = None
    endDateTime: IsoDateTime | None = None
    deviceInfo: OptOutDeviceInfo

    @model_validator(mode="after")
    def _an_add_has_its_period(self) -> UnavailabilityDetails:
        # Only an ADD goes on to DERMS, and DERMS cannot place an unavailability without its
        # period; an UPDATE or DELETE is answered and left, so it may come without one.
        if self.action == "ADD":
            missing = [
                name
                for name, value in (
                    ("startDateTime", self.startDateTime),
                    ("endDateTime", self.endDateTime),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"an ADD needs {' and '.join(missing)}")
        return self


class CustomerUnavailabilityMessage(Wire):
    """CPMCS outbound message X1-CUSTUNAVL (Customer Unavailability)."""

    sendDetails: UnavailabilityDetails


class DermsOptOut(Wire):
    """The body of DERMS POST /dacs-opt-out: an event opt-out (eventId) or an
    unavailability (its period)."""

    dacsMessageId: str
    optOutType: OptOutType
    eventId: str | None = None
    startDateTimeISO: str | None = None
    endDateTimeISO: str | None = None
    device: OptOutDevice
