"""Flow 11, Program Rule Sync (OUTL-BA-DACS_DERMS_PROGRULE_SYNC).

CPMCS sends a program with the rules linked to it; DERMS gets it at /update-program on
the connection its division routes to, with CPMCS's codes turned into DERMS's values.
On DERMS's HTTP 200, flow 12 (Program Rule Sync Ack) acknowledges the sync to CPMCS.
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import LookupMiss
from derms_bridge.flows.ports import FlowContext, FlowResult, SyncFlow, fault_to_cpmcs
from derms_bridge.flows.sync_ack import (
    PROGRAM_RULE_SYNC_ACK_FLOW,
    crash_reply,
    update_derms_and_acknowledge,
)
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import CpmcsReply
from derms_bridge.schemas.program_sync import (
    DermsUpdateProgram,
    ProgramRule,
    ProgramRuleSyncMessage,
)


def business_keys(message: ProgramRuleSyncMessage) -> list[tuple[str, str]]:
    details = message.sendDetails
    return [
        ("syncRequestId", details.syncRequestId),
        ("programCode", details.program.programCode),
    ]


def to_derms_rule(rule: ProgramRule, lookups: Lookups) -> ProgramRule:
    """A rule with DERMS's values; a code a lookup lacks raises LookupMiss naming both."""
    return rule.model_copy(
        update={
            "cycleFrequency": (
                lookups.translate("CycleFrequency", rule.cycleFrequency)
                if rule.cycleFrequency is not None
                else None
            ),
            "weekDays": [lookups.translate("WeekDay", day) for day in rule.weekDays],
            "allowEventDays": (
                lookups.translate("AllowEventDays", rule.allowEventDays)
                if rule.allowEventDays is not None
                else None
            ),
        }
    )


def to_derms_program(message: ProgramRuleSyncMessage, lookups: Lookups) -> DermsUpdateProgram:
    """Step 2: the payload in DERMS's format."""
    details = message.sendDetails
    program = details.program
    return DermsUpdateProgram(
        dacsMessageId=details.syncRequestId,
        program=program.model_copy(
            update={"rules": [to_derms_rule(rule, lookups) for rule in program.rules]}
        ),
    )


async def run(message: ProgramRuleSyncMessage, ctx: FlowContext) -> FlowResult[CpmcsReply]:
    # Step 1: triggered by CPMCS's outbound message.
    details = message.sendDetails
    try:
        # Step 2: transform; nothing goes to DERMS when a lookup lacks a code.
        body = to_derms_program(message, ctx.lookups)
    except LookupMiss as miss:
        # Step 5: the error email and a fault to CPMCS.
        return await fault_to_cpmcs(ctx, miss)
    # Steps 3 to 5, as flow 13: DERMS's update-program, then flow 12 on its HTTP 200.
    return await update_derms_and_acknowledge(
        ctx,
        operation="updateProgram",
        body=body,
        division=details.program.division,
        sync_request_id=details.syncRequestId,
        acknowledgement=PROGRAM_RULE_SYNC_ACK_FLOW,
    )


FLOW = SyncFlow(
    info=BY_KEY["program_rule_sync"],
    message_model=ProgramRuleSyncMessage,
    reply_model=CpmcsReply,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/cpmcs/outbound/X1-GEDPGRMSG",
    role="cpmcs",
)
