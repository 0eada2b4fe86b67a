"""Flow 3, Enroll and Device Headend Status Ack (OUTL-BA-DERMS_DACS_EN_DVSTAT_ACK).

DERMS acknowledges an enrollment sync (flow 2) with each device's head-end
registration status; CPMCS gets it through postAcknowledgement.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import BusinessError, FlowError
from derms_bridge.flows.ports import AnyJson, FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckCode, AckMessage, AckResponse
from derms_bridge.schemas.enroll_headend_status_ack import (
    MESSAGE_CATEGORY,
    DeviceHeadendStatus,
    EnrollHeadendStatusAckMessage,
    ExceptionInfo,
    PostAcknowledgementRequest,
)

OPERATION = "postAcknowledgement"

#: The response value DERMS gets when CPMCS took the acknowledgement.
ACKNOWLEDGED = "ACKNOWLEDGED"


def business_keys(message: EnrollHeadendStatusAckMessage) -> list[tuple[str, str]]:
    return [("syncRequestId", message.dacsMessageId)] + [
        ("deviceId", device.deviceId) for device in message.devices
    ]


def to_post_acknowledgement(
    message: EnrollHeadendStatusAckMessage, lookups: Lookups
) -> PostAcknowledgementRequest:
    """Step 2: the acknowledgement in CPMCS's format; LookupMiss for an unknown headEndStatus."""
    return PostAcknowledgementRequest(
        syncRequestId=message.dacsMessageId,
        hasError=message.ackType != "SUCCESS",
        deviceHeadendStatus=[
            DeviceHeadendStatus(
                deviceId=device.deviceId,
                headEndRegistration=lookups.translate("DeviceHeadendStatus", device.headEndStatus),
                message=device.message,
            )
            for device in message.devices
        ],
        exceptionInfo=[
            ExceptionInfo(
                messageCategory=MESSAGE_CATEGORY,
                messageNumber=error.messageNumber,
                comments=error.message,
            )
            for error in message.errors
        ],
    )


def acknowledgement(
    message: EnrollHeadendStatusAckMessage, value: str, code: AckCode
) -> AckMessage:
    """The MsgAck for DERMS: one response, for the acknowledged dacsMessageId."""
    return AckMessage.of(
        [
            AckResponse(
                id=message.dacsMessageId,
                value=value,
                responseCode=code,
                dacsMessageId=message.dacsMessageId,
            )
        ]
    )


async def run(message: EnrollHeadendStatusAckMessage, ctx: FlowContext) -> FlowResult[AckMessage]:
    # Step 1: triggered by DERMS's enrollment and device head-end status acknowledgement.
    try:
        # Step 2: transform; a headEndStatus the lookup lacks stops here, before any call.
        request = to_post_acknowledgement(message, ctx.lookups)
        # Step 3: invoke postAcknowledgement.
        await ctx.cpmcs.send(OPERATION, request, AnyJson)
    except FlowError as error:
        # Step 4: any error is emailed and the flow stops; DERMS reads it in the MsgAck,
        # ERROR when CPMCS refused the acknowledgement, FAILURE for everything else.
        reason = str(error)
        await ctx.errors.report(reason)
        code: AckCode = "ERROR" if isinstance(error, BusinessError) else "FAILURE"
        return FlowResult.failed(acknowledgement(message, reason, code), reason)
    return FlowResult.ok(acknowledgement(message, ACKNOWLEDGED, "SUCCESS"))


def crash_reply(message: EnrollHeadendStatusAckMessage, error: str) -> AckMessage:
    return acknowledgement(message, error, "FAILURE")


FLOW = SyncFlow(
    info=BY_KEY["enroll_headend_status_ack"],
    message_model=EnrollHeadendStatusAckMessage,
    reply_model=AckMessage,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/enroll-ack-all-to-dacs",
    role="derms",
)
