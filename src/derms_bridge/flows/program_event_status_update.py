"""Flow 6, Program Event Status Update (OUTL-BA-DRMS_DACS_STAGE_STAT_UPD).

DERMS sends one stage of an event and its new status. A SCHEDULED stage becomes a
CPMCS program event (createProgramEvent); every later status moves that program
event through its lifecycle (actionProgramEvent).
"""

from __future__ import annotations

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import BusinessError, FlowError
from derms_bridge.flows.ports import AnyJson, FlowContext, FlowResult, SyncFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckCode, AckMessage, AckResponse
from derms_bridge.schemas.cpmcs import PROGRAM_EVENT_ALREADY_IN_STATUS, PROGRAM_EVENT_EXISTS
from derms_bridge.schemas.program_event_status import (
    ActionProgramEventRequest,
    CreateProgramEventRequest,
    StageStatusMessage,
)

#: The response value when CPMCS created the program event.
CREATED = "CREATED"


def business_keys(message: StageStatusMessage) -> list[tuple[str, str]]:
    return [
        ("messageId", message.messageId),
        ("eventId", message.eventId),
        ("stageId", message.stageId),
    ]


def to_create_program_event(
    message: StageStatusMessage, lookups: Lookups
) -> CreateProgramEventRequest:
    """Step 2 for a SCHEDULED stage: the program event in CPMCS's format."""
    # StageStatusMessage refuses a SCHEDULED stage without these; the checks narrow the types.
    if (
        message.programId is None
        or message.eventType is None
        or message.startDateTimeISO is None
        or message.endDateTimeISO is None
    ):
        raise ValueError("a SCHEDULED stage needs programId, eventType and both date-times")
    return CreateProgramEventRequest(
        eventExternalIdentifier=message.eventId,
        externalIdentifier=message.stageId,
        programExternalIdentifier=message.programId,
        programEventCategory=lookups.translate("EventType", message.eventType),
        startDateTime=message.startDateTimeISO,
        endDateTime=message.endDateTimeISO,
    )


def to_action_program_event(
    message: StageStatusMessage, lookups: Lookups
) -> ActionProgramEventRequest:
    """Step 2 for any other status: the lifecycle action in CPMCS's format."""
    return ActionProgramEventRequest(
        action=lookups.translate("StageStatus", message.stageStatus),
        eventExternalIdentifier=message.eventId,
        externalIdentifier=message.stageId,
        cancelReason=message.cancelReason,
    )


async def _create(ctx: FlowContext, created: CreateProgramEventRequest) -> str:
    """createProgramEvent; the response value. CPMCS's "already exists" for this event and
    stage is done, as flow 1 takes 10589: a resubmit, or DERMS's resend after an answer
    that was lost, finds the program event it was to create."""
    try:
        await ctx.cpmcs.send("createProgramEvent", created, AnyJson)
    except BusinessError as error:
        if error.message_number != PROGRAM_EVENT_EXISTS:
            raise
        return error.message
    return CREATED


async def _act(ctx: FlowContext, action: ActionProgramEventRequest) -> str:
    """actionProgramEvent; the response value. CPMCS's "is {status} already" is done too: a
    resend of a status whose answer was lost, or IN_PROGRESS then ACTIVE (both X1IP), finds
    the program event where the action was to put it. Every other refusal stands (an action
    on a completed or cancelled program event, or back to an earlier status)."""
    try:
        await ctx.cpmcs.send("actionProgramEvent", action, AnyJson)
    except BusinessError as error:
        if error.message_number != PROGRAM_EVENT_ALREADY_IN_STATUS:
            raise
        return error.message
    return action.action


def msg_ack(message: StageStatusMessage, value: str, code: AckCode) -> AckMessage:
    """The one response for the stage; its code is the overall ackType."""
    return AckMessage.of([AckResponse(id=message.messageId, value=value, responseCode=code)])


async def run(message: StageStatusMessage, ctx: FlowContext) -> FlowResult[AckMessage]:
    # Step 1: triggered by DERMS with one stage and its status.
    try:
        # Steps 2 and 3: transform (a lookup miss stops here, before anything is sent),
        # then createProgramEvent for SCHEDULED and actionProgramEvent for every other status.
        if message.is_scheduled:
            created = to_create_program_event(message, ctx.lookups)
            value = await _create(ctx, created)
        else:
            action = to_action_program_event(message, ctx.lookups)
            value = await _act(ctx, action)
    except FlowError as error:
        # Step 5: any error is emailed and answered negatively. The reference makes no
        # exception for CPMCS's business errors here (unlike flow 1), so they are emailed
        # too, and answered ERROR rather than FAILURE.
        code: AckCode = "ERROR" if isinstance(error, BusinessError) else "FAILURE"
        await ctx.errors.report(str(error))
        return FlowResult.failed(msg_ack(message, str(error), code), str(error))
    # Step 4: the positive response.
    return FlowResult.ok(msg_ack(message, value, "SUCCESS"))


def crash_reply(message: StageStatusMessage, error: str) -> AckMessage:
    """Step 5: when the flow itself stops, DERMS still gets a negative response."""
    return msg_ack(message, error, "FAILURE")


FLOW = SyncFlow(
    info=BY_KEY["program_event_status_update"],
    message_model=StageStatusMessage,
    reply_model=AckMessage,
    business_keys=business_keys,
    run=run,
    crash_reply=crash_reply,
    route="/stage-status-to-dacs",
    role="derms",
)
