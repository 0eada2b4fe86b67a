"""Flow 3, Enroll and Device Headend Status Ack: DERMS's acknowledgement and CPMCS's
postAcknowledgement.

CPMCS's field limits are set on the DERMS side too, so that a value CPMCS could not
take is refused at the trigger (422 naming the field) and never sent.
"""

from __future__ import annotations

from pydantic import Field

from derms_bridge.schemas.common import MAX_LIST_ITEMS, AckCode, JsonInt, Wire

#: The CPMCS message category every exceptionInfo carries (the contract's default).
MESSAGE_CATEGORY = 11101

SYNC_REQUEST_ID_MAX = 14
DEVICE_ID_MAX = 12
DEVICE_MESSAGE_MAX = 2000
COMMENTS_MAX = 254
MESSAGE_NUMBER_MIN, MESSAGE_NUMBER_MAX = -99999, 99999


class DeviceHeadendAck(Wire):
    """One device's head-end registration status, as DERMS reports it."""

    deviceId: str = Field(min_length=1, max_length=DEVICE_ID_MAX)
    headEndStatus: str = Field(min_length=1, description="through DeviceHeadendStatus")
    message: str | None = Field(default=None, max_length=DEVICE_MESSAGE_MAX)


class DermsAckError(Wire):
    """An error DERMS met while processing the enrollment sync."""

    messageNumber: JsonInt = Field(ge=MESSAGE_NUMBER_MIN, le=MESSAGE_NUMBER_MAX)
    message: str | None = Field(
        default=None, max_length=COMMENTS_MAX, description="becomes exceptionInfo comments"
    )


class EnrollHeadendStatusAckMessage(Wire):
    """Flow 3's trigger body, DERMS POST /enroll-ack-all-to-dacs."""

    dacsMessageId: str = Field(
        min_length=1, max_length=SYNC_REQUEST_ID_MAX, description="becomes syncRequestId"
    )
    ackType: AckCode
    whenISO: str | None = Field(None, description="as DERMS wrote it; not read")
    devices: list[DeviceHeadendAck] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    errors: list[DermsAckError] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class DeviceHeadendStatus(Wire):
    deviceId: str = Field(max_length=DEVICE_ID_MAX)
    headEndRegistration: str
    message: str | None = Field(default=None, max_length=DEVICE_MESSAGE_MAX)


class ExceptionInfo(Wire):
    messageCategory: int = Field(ge=MESSAGE_NUMBER_MIN, le=MESSAGE_NUMBER_MAX)
    messageNumber: int = Field(ge=MESSAGE_NUMBER_MIN, le=MESSAGE_NUMBER_MAX)
    comments: str | None = Field(default=None, max_length=COMMENTS_MAX)


class PostAcknowledgementRequest(Wire):
    """The body of CPMCS X1-ProgramEnrollment postAcknowledgement."""

    syncRequestId: str = Field(max_length=SYNC_REQUEST_ID_MAX)
    hasError: bool
    deviceHeadendStatus: list[DeviceHeadendStatus]
    exceptionInfo: list[ExceptionInfo]
