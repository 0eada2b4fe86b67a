"""Flow 2, Enrollment Sync (OUTL-BA-DACS_DRMS_ENROLL_SYNC).

CPMCS sends an enrollment, unenrollment, device change or DER registration; DERMS
gets it at /enroll on the connection its division routes to.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow, fault_to_cpmcs
from derms_bridge.schemas.common import CpmcsReply, ResponseDetails
from derms_bridge.schemas.enrollment_sync import (
    DermsEnroll,
    DermsSubscriptionInfo,
    EnrollmentSyncMessage,
)


def business_keys(message: EnrollmentSyncMessage) -> list[tuple[str, str]]:
    details = message.sendDetails
    keys = [("syncRequestId", details.syncRequestId)]
    if details.subscriptionInfo.subscriptionId:
        keys.append(("subscriptionId", details.subscriptionInfo.subscriptionId))
    if details.contactInfo and details.contactInfo.cisPersonId:
        keys.append(("cisPersonId", details.contactInfo.cisPersonId))
    keys += [
        ("deviceId", d.deviceId) for d in details.locationInfo.controllableDevices if d.deviceId
    ]
    return keys


def to_derms_enroll(message: EnrollmentSyncMessage) -> DermsEnroll:
    """Step 2: the payload in DERMS's format; the fields the contract does not name (a DER
    registration's details) go on as they came, beside those it maps."""
    details = message.sendDetails
    subscription = details.subscriptionInfo
    return DermsEnroll.model_validate(
        {
            **(details.model_extra or {}),
            "dacsMessageId": details.syncRequestId,
            "contactInfo": details.contactInfo,
            "subscriptionInfo": DermsSubscriptionInfo.model_validate(
                {
                    **(subscription.model_extra or {}),
                    "subscriptionId": subscription.subscriptionId,
                    "cisAccountId": subscription.cisAccountId,
                    "subscriptionType": subscription.subscriptionType,
                    "status": subscription.status,
                    "programId": subscription.programId,
                    "startDateTimeISO": subscription.startDateTime,
                    "endDateTimeISO": subscription.endDateTime,
                    "programCode": subscription.programCode,
                }
            ),
            "locationInfo": details.locationInfo,
        }
    )


async def run(message: EnrollmentSyncMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's outbound message.
    details = message.sendDetails
    try:
        # Steps 2 and 3: transform, and invoke DERMS's enrollment service.
        await ctx.derms.deliver(
            "enroll", to_derms_enroll(message), division=details.locationInfo.division
        )
    except FlowError as error:
        # Steps 4 and 5: an error status or no answer is a fault to CPMCS and an email.
        return await fault_to_cpmcs(ctx, error)
    # Step 4: DERMS's 200 finishes the request with syncRequestId as externalId.
    return FlowResult.ok(
        CpmcsReply(responseDetails=ResponseDetails(externalId=details.syncRequestId))
    )


def crash_reply(_message: EnrollmentSyncMessage, _error: str) -> None:
    return None


FLOW = SyncFlow(
    info=BY_KEY["enrollment_sync"],
    message_model=EnrollmentSyncMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-NMSDASMSG",
    role="cpmcs",
)
