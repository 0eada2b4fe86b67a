"""Flows 12 and 14, Program Rule Sync Ack and Aggregator Sync Ack, and the steps 11 and 13 share.

12 (OUTL-BA-DRMS_DACS_SYNC_ACK) and 14 (OUTL-BA-DERMS_DACS_AGGSYNC_ACK) are one
process under two catalog entries: the sync that ran before hands it DERMS's HTTP 200
answer, and it tells CPMCS through F1-SyncRequest whether DERMS took the sync. Flows
11 and 13 differ only in what they send DERMS; from the call to DERMS on, their steps
are the same and live here (`update_derms_and_acknowledge`).
"""

from __future__ import annotations

from pydantic import BaseModel

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import FlowError
from derms_bridge.flows.ports import AnyJson, FlowContext, FlowResult, SyncFlow, fault_to_cpmcs
from derms_bridge.flows.text_fit import fit_to
from derms_bridge.schemas.common import CpmcsReply, ResponseDetails
from derms_bridge.schemas.program_sync import (
    COMMENTS_MAX,
    DermsSyncAnswer,
    ExceptionInfo,
    SyncAckMessage,
    SyncRequestUpdate,
)

#: DERMS's MsgAck carries no message number; 0 says "none" within CPMCS's -99999..99999.
NO_MESSAGE_NUMBER = 0


def fit_comments(text: str) -> str:
    """The text within CPMCS's 254 characters: a longer one keeps its first 251 and ends in
    "...". The whole text stays in the instance's payload (DERMS's answer)."""
    return fit_to(text, COMMENTS_MAX)


def exception_info(answer: DermsSyncAnswer) -> list[ExceptionInfo]:
    """What DERMS said against the sync: one entry per response not SUCCESS, its value as the
    comments; one entry naming the ackType when no response says more."""
    ack = answer.MsgAck
    said = [
        response.value
        for response in ack.responses.response
        if response.responseCode != "SUCCESS" and response.value
    ]
    comments = said or [f"DERMS answered ackType {ack.ackType}"]
    return [
        ExceptionInfo(messageNumber=NO_MESSAGE_NUMBER, comments=fit_comments(text))
        for text in comments
    ]


def to_sync_request_update(message: SyncAckMessage) -> SyncRequestUpdate:
    """Step 2: DERMS's answer in CPMCS's format; any ackType but SUCCESS is an error."""
    if message.dermsAnswer.MsgAck.ackType == "SUCCESS":
        return SyncRequestUpdate(syncRequestId=message.syncRequestId, hasError=False)
    return SyncRequestUpdate(
        syncRequestId=message.syncRequestId,
        hasError=True,
        exceptionInfo=exception_info(message.dermsAnswer),
    )


async def acknowledge(message: SyncAckMessage, ctx: FlowContext) -> FlowResult[SyncRequestUpdate]:
    """Flows 12 and 14; the reply (for the instance, not for a caller) is what CPMCS got."""
    # Step 1: triggered by flow 11 or 13 after DERMS's HTTP 200, with DERMS's answer.
    # Step 2: DERMS's answer in CPMCS's format.
    update = to_sync_request_update(message)
    try:
        # Step 3: CPMCS's Sync Request Update (F1-SyncRequest) takes the acknowledgement.
        await ctx.cpmcs.send(
            "updateSyncRequest", update, AnyJson, syncRequestId=message.syncRequestId
        )
    except FlowError as error:
        # Step 4: an error email; this instance fails and the sync that ran it learns so.
        return await fault_to_cpmcs(ctx, error)
    return FlowResult.ok(update)


def ack_business_keys(message: SyncAckMessage) -> list[tuple[str, str]]:
    return [("syncRequestId", message.syncRequestId)]


def crash_reply(_message: BaseModel, _error: str) -> None:
    return None


async def update_derms_and_acknowledge(
    ctx: FlowContext,
    *,
    operation: str,
    body: BaseModel,
    division: str | None,
    sync_request_id: str,
    acknowledgement: SyncFlow[SyncAckMessage, SyncRequestUpdate],
) -> FlowResult[CpmcsReply]:
    """Flows 11 and 13, steps 3 to 5: DERMS takes the sync, the acknowledgement flow tells
    CPMCS, and CPMCS gets syncRequestId as externalId, or a fault."""
    try:
        # Step 3: DERMS's update service on the connection the division routes to.
        answer = await ctx.derms.send(operation, body, DermsSyncAnswer, division=division)
    except FlowError as error:
        # Step 4, an error status, and step 5, no answer or one the hub cannot read.
        return await fault_to_cpmcs(ctx, error)
    # Step 4, HTTP 200: the acknowledgement runs as an instance of its own, child of this one.
    acked = await ctx.children.run(
        acknowledgement, SyncAckMessage(syncRequestId=sync_request_id, dermsAnswer=answer)
    )
    if acked.status != "succeeded":
        # Step 5: the acknowledgement failed and has sent the error email; this instance
        # fails without a second one, and CPMCS gets a fault (the reference's for flow 14).
        return FlowResult.failed(
            None, f"{acknowledgement.info.title} failed: {acked.error}", timed_out=acked.timed_out
        )
    return FlowResult.ok(CpmcsReply(responseDetails=ResponseDetails(externalId=sync_request_id)))


def _acknowledgement_flow(key: str) -> SyncFlow[SyncAckMessage, SyncRequestUpdate]:
    # Internal: no route; runs as a child of its sync, or when an operator resubmits it.
    return SyncFlow(
        info=BY_KEY[key],
        message_model=SyncAckMessage,
        reply_model=SyncRequestUpdate,
        business_keys=ack_business_keys,
        run=acknowledge,
        crash_reply=crash_reply,
    )


PROGRAM_RULE_SYNC_ACK_FLOW = _acknowledgement_flow("program_rule_sync_ack")
AGGREGATOR_SYNC_ACK_FLOW = _acknowledgement_flow("aggregator_sync_ack")
