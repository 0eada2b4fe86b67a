"""Flow 5, Device Status Check Ack: DERMS's device status, CPMCS's
postControllableDeviceStatus, and the MsgAck DERMS gets back.

The reference returns CPMCS's boStatus to DERMS in the response's `responseCode`
(with a SUCCESS ackType), so this flow's MsgAck types `responseCode` as any text;
every other MsgAck keeps it to SUCCESS, ERROR or FAILURE (schemas/common.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from derms_bridge.schemas.common import MAX_LIST_ITEMS, AckCode, HubTime, Wire, iso_now

TRANSACTION_ID_MAX = 30


class DeviceStatusCheckAckMessage(Wire):
    """Flow 5's trigger body, DERMS POST /status-check-ack-to-dacs."""

    dacsMessageId: str = Field(
        min_length=1,
        max_length=TRANSACTION_ID_MAX,
        description="the communicationId of flow 4; becomes transactionID",
    )
    responseCode: Literal["SUCCESS", "FAILURE"]
    message: str | None = None


class DeviceStatusResult(Wire):
    status: str


class DeviceStatusResponseDetail(Wire):
    transactionID: str = Field(max_length=TRANSACTION_ID_MAX)
    result: DeviceStatusResult


class PostControllableDeviceStatusRequest(Wire):
    """The body of CPMCS X1-ControllableDeviceStatus postControllableDeviceStatus."""

    responseDetail: DeviceStatusResponseDetail


class PostControllableDeviceStatusAnswer(Wire):
    boStatus: str = Field(min_length=1)


class DeviceStatusAckResponse(Wire):
    """AckResponse with `responseCode` widened to carry CPMCS's boStatus."""

    id: str
    value: str
    responseCode: str = Field(description="CPMCS's boStatus on success, else FAILURE")
    responseTimeISO: HubTime = Field(default_factory=iso_now)
    dacsMessageId: str | None = None


class DeviceStatusAckResponses(Wire):
    response: list[DeviceStatusAckResponse] = Field(max_length=MAX_LIST_ITEMS)


class DeviceStatusMsgAckBody(Wire):
    ackType: AckCode
    whenISO: HubTime = Field(default_factory=iso_now)
    responses: DeviceStatusAckResponses


class DeviceStatusAck(Wire):
    """The MsgAck of flow 5: one response, for the acknowledged dacsMessageId."""

    MsgAck: DeviceStatusMsgAckBody

    @classmethod
    def of(cls, ack_type: AckCode, response: DeviceStatusAckResponse) -> DeviceStatusAck:
        return cls(
            MsgAck=DeviceStatusMsgAckBody(
                ackType=ack_type, responses=DeviceStatusAckResponses(response=[response])
            )
        )
