"""Flow 5, Device Status Check Ack (OUTL-BA-DACS_DRMS_DEVICE_STATUS, shared with flow 4).

DERMS answers a device status check (flow 4) asynchronously; CPMCS gets the status
through postControllableDeviceStatus, and DERMS gets CPMCS's boStatus back.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.schemas.device_status_check_ack import (
    DeviceStatusAck,
    DeviceStatusAckResponse,
    DeviceStatusCheckAckMessage,
    DeviceStatusResponseDetail,
    DeviceStatusResult,
    PostControllableDeviceStatusAnswer,
    PostControllableDeviceStatusRequest,
)

OPERATION = "postControllableDeviceStatus"


def business_keys(message: DeviceStatusCheckAckMessage) -> list[tuple[str, str]]:
    # dacsMessageId is flow 4's communicationId: one key finds both halves of the check.
    return [("communicationId", message.dacsMessageId)]


def to_device_status(message: DeviceStatusCheckAckMessage) -> PostControllableDeviceStatusRequest:
    """Step 2: the device status in CPMCS's format."""
    return PostControllableDeviceStatusRequest(
        responseDetail=DeviceStatusResponseDetail(
            transactionID=message.dacsMessageId,
            result=DeviceStatusResult(status=message.responseCode),
        )
    )


def failure(message: DeviceStatusCheckAckMessage, reason: str) -> DeviceStatusAck:
    return DeviceStatusAck.of(
        "FAILURE",
        DeviceStatusAckResponse(
            id=message.dacsMessageId,
            value=reason,
            responseCode="FAILURE",
            dacsMessageId=message.dacsMessageId,
        ),
    )


async def run(
    message: DeviceStatusCheckAckMessage, ctx: FlowContext
) -> FlowResult[DeviceStatusAck]:
    # Step 1: triggered by DERMS's device status.
    try:
        # Steps 2 and 3: transform, and invoke postControllableDeviceStatus.
        answer = await ctx.cpmcs.send(
            OPERATION, to_device_status(message), PostControllableDeviceStatusAnswer
        )
    except FlowError as error:
        # Steps 4 and 5: an error status (a refusal included) or no answer is a
        # FAILURE to DERMS, and the error email.
        reason = str(error)
        await ctx.errors.report(reason)
        return FlowResult.failed(failure(message, reason), reason)
    # Step 4: status 200 returns CPMCS's boStatus in responseCode, with a SUCCESS ackType.
    return FlowResult.ok(
        DeviceStatusAck.of(
            "SUCCESS",
            DeviceStatusAckResponse(
                id=message.dacsMessageId,
                value=answer.boStatus,
                responseCode=answer.boStatus,
                dacsMessageId=message.dacsMessageId,
            ),
        )
    )


def crash_reply(message: DeviceStatusCheckAckMessage, error: str) -> DeviceStatusAck:
    return failure(message, error)


FLOW = SyncFlow(
    info=BY_KEY["device_status_check_ack"],
    message_model=DeviceStatusCheckAckMessage,
    reply_model=DeviceStatusAck,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/status-check-ack-to-dacs",
    role="derms",
)
