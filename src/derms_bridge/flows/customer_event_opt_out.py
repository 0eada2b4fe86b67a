"""Flow 9, Customer Event Opt Out (OUTL-BA-DACS_DERMS_EVTOPTOUT_UPD).

A CSR opts a customer's device out of an upcoming event in CPMCS; DERMS gets the
opt-out at /dacs-opt-out on the connection the device's division routes to, and
answers with a MsgAck. Flow 10 sends its unavailabilities through `send_opt_out` too.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow, fault_to_cpmcs
from derms_bridge.schemas.common import AckMessage, CpmcsReply, ResponseDetails
from derms_bridge.schemas.opt_out import DermsOptOut, EventOptOutMessage


def business_keys(message: EventOptOutMessage) -> list[tuple[str, str]]:
    details = message.sendDetails
    keys = [("messageId", details.messageId), ("eventId", details.eventExternalIdentifier)]
    if details.deviceInfo.deviceId:
        keys.append(("deviceId", details.deviceInfo.deviceId))
    return keys


def to_derms_opt_out(message: EventOptOutMessage) -> DermsOptOut:
    """Step 2: the payload in DERMS's format."""
    details = message.sendDetails
    return DermsOptOut(
        dacsMessageId=details.messageId,
        optOutType="EVENT",
        eventId=details.eventExternalIdentifier,
        device=details.deviceInfo.device(),
    )


def refusal_in(ack: AckMessage) -> str | None:
    """What DERMS's MsgAck refused, naming its ackType and response values; None on SUCCESS."""
    if ack.MsgAck.ackType == "SUCCESS":
        return None
    values = "; ".join(response.value for response in ack.MsgAck.responses.response)
    return f"DERMS answered optOut with ackType {ack.MsgAck.ackType}: {values or 'no response'}"


async def send_opt_out(
    opt_out: DermsOptOut, *, division: str | None, ctx: FlowContext
) -> FlowResult[CpmcsReply]:
    """Invoke DERMS's opt-out service and sort its answer (flow 9 steps 3 to 5, flow 10
    steps 4 to 6): a MsgAck SUCCESS is the reply to CPMCS with externalId = dacsMessageId;
    anything else is an email and a fault to CPMCS."""
    try:
        ack = await ctx.derms.send("optOut", opt_out, AckMessage, division=division)
    except FlowError as error:
        # An error status, no answer or one the hub cannot read: 504 when DERMS timed out.
        return await fault_to_cpmcs(ctx, error)
    refusal = refusal_in(ack)
    if refusal is not None:
        # A 200 whose ackType is not SUCCESS: DERMS did not take the opt-out.
        await ctx.errors.report(refusal)
        return FlowResult.failed(None, refusal)
    return FlowResult.ok(
        CpmcsReply(responseDetails=ResponseDetails(externalId=opt_out.dacsMessageId))
    )


async def run(message: EventOptOutMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's opt-out message.
    details = message.sendDetails
    # Step 2: transform.
    opt_out = to_derms_opt_out(message)
    # Steps 3 to 5: invoke DERMS's opt-out service; SUCCESS finishes, anything else is a
    # fault to CPMCS and an email.
    return await send_opt_out(opt_out, division=details.deviceInfo.division, ctx=ctx)


def crash_reply(_message: EventOptOutMessage, _error: str) -> None:
    return None


FLOW = SyncFlow(
    info=BY_KEY["customer_event_opt_out"],
    message_model=EventOptOutMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-EPOPTOMSG",
    role="cpmcs",
)
