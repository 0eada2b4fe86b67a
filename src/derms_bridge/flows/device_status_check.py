"""Flow 4, Device Status Check (OUTL-BA-DACS_DRMS_DEVICE_STATUS).

CPMCS asks for a controllable device's status; DERMS gets the request at /status-check
on the connection its division routes to, and answers later through flow 5.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow, fault_to_cpmcs
from derms_bridge.schemas.common import CpmcsReply, ResponseDetails
from derms_bridge.schemas.device_status_check import DermsStatusCheck, DeviceStatusCheckMessage


def business_keys(message: DeviceStatusCheckMessage) -> list[tuple[str, str]]:
    return [("communicationId", message.sendDetails.communicationId)]


def to_derms_status_check(message: DeviceStatusCheckMessage) -> DermsStatusCheck:
    """Step 2: the payload in DERMS's format."""
    details = message.sendDetails
    return DermsStatusCheck(dacsMessageId=details.communicationId, DeviceInfo=details.deviceInfo)


async def run(message: DeviceStatusCheckMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's device status request.
    details = message.sendDetails
    try:
        # Steps 2 and 3: transform, and invoke DERMS's status check service.
        await ctx.derms.deliver(
            "statusCheck",
            to_derms_status_check(message),
            division=details.deviceInfo.division,
        )
    except FlowError as error:
        # Step 4: an error status or no answer is an email and a fault to CPMCS.
        return await fault_to_cpmcs(ctx, error)
    # Step 4: DERMS's 200 ends the process, whatever its body says (the reference reads only
    # the status); the device's status comes back later through flow 5.
    return FlowResult.ok(
        CpmcsReply(responseDetails=ResponseDetails(externalId=details.communicationId))
    )


def crash_reply(_message: DeviceStatusCheckMessage, _error: str) -> None:
    return None


FLOW = SyncFlow(
    info=BY_KEY["device_status_check"],
    message_model=DeviceStatusCheckMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-CTRLDVCS",
    role="cpmcs",
)
