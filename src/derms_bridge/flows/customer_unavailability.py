"""Flow 10, Customer Unavailability Update (OUTL-BA-DACS_DERMS_EVT_CUST_UNAVAIL_UPD).

A customer's unavailability for a period is recorded in CPMCS; a new one (action ADD)
goes to DERMS as an opt-out of type UNAVAILABILITY, through flow 9's `send_opt_out`.
The reference sends only new records, so an UPDATE or DELETE is answered and left.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.flows.customer_event_opt_out import send_opt_out
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow
from derms_bridge.schemas.common import CpmcsReply, ResponseDetails
from derms_bridge.schemas.opt_out import CustomerUnavailabilityMessage, DermsOptOut


def business_keys(message: CustomerUnavailabilityMessage) -> list[tuple[str, str]]:
    details = message.sendDetails
    keys = [("messageId", details.messageId), ("unavailabilityId", details.unavailabilityId)]
    if details.deviceInfo.deviceId:
        keys.append(("deviceId", details.deviceInfo.deviceId))
    return keys


def to_derms_opt_out(message: CustomerUnavailabilityMessage) -> DermsOptOut:
    """Step 3: the payload in DERMS's format."""
    details = message.sendDetails
    return DermsOptOut(
        dacsMessageId=details.messageId,
        optOutType="UNAVAILABILITY",
        startDateTimeISO=details.startDateTime,
        endDateTimeISO=details.endDateTime,
        device=details.deviceInfo.device(),
    )


async def run(message: CustomerUnavailabilityMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's unavailability message.
    details = message.sendDetails
    # Step 2: only a new record (ADD) goes on; CPMCS still gets its answer for the others.
    if details.action != "ADD":
        return FlowResult.skipped(
            CpmcsReply(responseDetails=ResponseDetails(externalId=details.messageId)),
            f"action {details.action}: only a new unavailability (ADD) goes to DERMS",
        )
    # Step 3: transform.
    opt_out = to_derms_opt_out(message)
    # Steps 4 to 6: invoke DERMS's opt-out service; SUCCESS finishes, anything else is a
    # fault to CPMCS and an email.
    return await send_opt_out(opt_out, division=details.deviceInfo.division, ctx=ctx)


def crash_reply(_message: CustomerUnavailabilityMessage, _error: str) -> None:
    return None


FLOW = SyncFlow(
    info=BY_KEY["customer_unavailability"],
    message_model=CustomerUnavailabilityMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-CUSTUNAVL",
    role="cpmcs",
)
