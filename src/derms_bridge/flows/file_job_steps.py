"""Steps 2 to 5 of the file flows, which the reference words alike for flow 7 (Event Device
Reservation) and flow 8 (Event Device Outcome): each flow's module names what its steps
send, and calls these.
"""

from __future__ import annotations

from typing import Any

import stamina
from pydantic import BaseModel

from derms_bridge.errors import FlowError, TechnicalFault
from derms_bridge.flows.ports import (
    Acknowledgement,
    AnyJson,
    CpmcsSegmentApi,
    FileJobContext,
    FileOutcome,
)
from derms_bridge.schemas.common import AckMessage


async def check_cpmcs_health(ctx: FileJobContext) -> str | None:
    """Step 2: CPMCS's F1-HealthCheckRest must answer before any segment goes. If it does
    not, why: nothing is sent, and the file is acknowledged FAILURE (step 5)."""
    try:
        await ctx.cpmcs.send("healthCheck", None, AnyJson)
    except FlowError as error:
        return f"CPMCS health check failed: {error}"
    return None


async def send_segment(cpmcs: CpmcsSegmentApi, operation: str, body: bytes) -> str | None:
    """Step 3 for one segment: its body to CPMCS's `operation`. Why CPMCS refused it, if it
    did: a refusal (a 4xx, a business error) of any segment is the file's FAILURE, which the
    acknowledgement's error email names, once. A passing fault (no answer, 429, a 5xx) is
    raised as it came, for the engine to try the segment again (`segments.retry`) before
    the file fails."""
    try:
        await cpmcs.send_json(operation, body)
    except TechnicalFault as fault:
        if fault.passing:
            raise
        return str(fault)
    except FlowError as refused:
        return str(refused)
    return None


def run_summary(outcome: FileOutcome, segment_operation: str) -> str:
    """What the acknowledgement and the emails say of the run."""
    if outcome.succeeded:
        again = outcome.segments_sent_again
        return (
            f"{outcome.rows} rows in {outcome.segments} segments taken by CPMCS "
            f"{segment_operation} (run {outcome.run}); "
            f"{again} {'segment' if again == 1 else 'segments'} sent more than once"
        )
    return outcome.failure or "the file was not sent"


async def acknowledge(
    ctx: FileJobContext, operation: str, ack: BaseModel, outcome: FileOutcome, summary: str
) -> Acknowledgement:
    """Steps 4 and 5: DERMS's `operation` gets the run's one MsgAck (`_send`); then the
    error emails (the file's failure, DERMS not taking the acknowledgement) and the
    process-complete email. The MsgAck as it went, and why DERMS did not take it, if so."""
    ack_error = await _send(ctx, operation, ack)
    if not outcome.succeeded:
        await ctx.errors.report(summary)
    if ack_error is not None:
        await ctx.errors.report(ack_error)
    # Sent when its flag says so, after a failure too: the failure's error email went above.
    await ctx.notices.process_complete(
        "SUCCESS" if outcome.succeeded and ack_error is None else "FAILURE",
        summary + (f"\n{ack_error}" if ack_error else ""),
        failed=False,
    )
    return Acknowledgement(ack.model_dump(mode="json", exclude_none=True), ack_error)


async def acknowledge_again(ctx: FileJobContext, operation: str, msg_ack: Any) -> str | None:
    """A run's MsgAck, as it went, to DERMS's `operation` again (DERMS lost it, or never
    took it): for DERMS's resend of a file it completed, or an operator's asking. The error
    email if DERMS does not take it; why, if so."""
    ack_error = await _send(ctx, operation, AckMessage.model_validate(msg_ack))
    if ack_error is not None:
        await ctx.errors.report(ack_error)
    return ack_error


async def _send(ctx: FileJobContext, operation: str, ack: BaseModel) -> str | None:
    """The MsgAck to DERMS's `operation`, on the connection of the DERMS that sent the file,
    tried up to `ctx.ack_attempts` times while it fails (an HTTP error, no answer, or an
    ackType other than SUCCESS); why DERMS did not take it, if so."""
    try:
        async for attempt in stamina.retry_context(
            on=FlowError,
            attempts=ctx.ack_attempts,
            wait_initial=0.2,
            wait_max=5.0,
            timeout=None,
        ):
            with attempt:
                answer = await ctx.derms.send(operation, ack, AnyJson, division=None)
                _accepted(answer.root, operation)
    except FlowError as error:
        return f"DERMS did not accept the acknowledgement after {ctx.ack_attempts} tries: {error}"
    return None


def _accepted(answer: Any, operation: str) -> None:
    """A MsgAck whose ackType is not SUCCESS is DERMS not taking the acknowledgement."""
    ack_type = answer.get("MsgAck", {}).get("ackType") if isinstance(answer, dict) else None
    if ack_type not in (None, "SUCCESS"):
        raise TechnicalFault(f"DERMS answered {operation} with ackType {ack_type}")
