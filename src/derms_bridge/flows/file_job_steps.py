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
from derms_bridge.schemas.common import AckMessage, AckResponse


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


#: How many of the rows set aside the acknowledgement names, a response each; a last
#: response counts the rest (the ops API's set-aside.csv holds them all).
ACK_NAMES_SET_ASIDE = 1000
#: How many of the rows set aside the emails name.
EMAIL_NAMES_SET_ASIDE = 10


def _rows(count: int) -> str:
    return f"{count} row" + ("" if count == 1 else "s")


def run_summary(outcome: FileOutcome, segment_operation: str) -> str:
    """What the acknowledgement and the emails say of the run."""
    if outcome.code == "FAILURE":
        return outcome.failure or "the file was not sent"
    set_aside = f"{_rows(outcome.rows_set_aside)} set aside"
    if not outcome.rows:
        return "no row to send: " + (set_aside if outcome.rows_set_aside else "the file has none")
    again = outcome.segments_sent_again
    sent = (
        f"{_rows(outcome.rows)} in {outcome.segments} segments taken by CPMCS "
        f"{segment_operation} (run {outcome.run}); "
        f"{again} {'segment' if again == 1 else 'segments'} sent more than once"
    )
    return f"{sent}; {set_aside}" if outcome.rows_set_aside else sent


def acknowledgement(message_id: str, outcome: FileOutcome, summary: str) -> AckMessage:
    """Steps 2 to 4: the run's one MsgAck. Its first response is the file's (the trigger's
    messageId, the summary); then one ERROR response a row set aside, by its recordId (or
    its line when it has none), up to ACK_NAMES_SET_ASIDE, and a last one counting the
    rest."""
    named = outcome.set_aside[:ACK_NAMES_SET_ASIDE]
    responses = [
        AckResponse(id=message_id, value=summary, responseCode=outcome.code),
        *(
            AckResponse(
                id=row.record_id or f"line {row.line}",
                value=f"line {row.line}: {row.reason}",
                responseCode="ERROR",
            )
            for row in named
        ),
    ]
    rest = outcome.rows_set_aside - len(named)
    if rest > 0:
        responses.append(
            AckResponse(id=message_id, value=f"{_rows(rest)} more set aside", responseCode="ERROR")
        )
    return AckMessage.of(responses, ack_type=outcome.code)


def _set_aside_named(outcome: FileOutcome) -> list[str]:
    """The first rows set aside, for the emails, and how many more there are."""
    named = outcome.set_aside[:EMAIL_NAMES_SET_ASIDE]
    more = outcome.rows_set_aside - len(named)
    return [str(row) for row in named] + ([f"and {_rows(more)} more"] if more > 0 else [])


async def acknowledge(
    ctx: FileJobContext, operation: str, ack: BaseModel, outcome: FileOutcome, summary: str
) -> Acknowledgement:
    """Steps 4 and 5: DERMS's `operation` gets the run's one MsgAck (`_send`); then the
    error emails (the file's failure or its rows set aside, DERMS not taking the
    acknowledgement) and the process-complete email, which name the first rows set aside.
    The MsgAck as it went, and why DERMS did not take it, if so."""
    ack_error = await _send(ctx, operation, ack)
    named = _set_aside_named(outcome)
    if outcome.code != "SUCCESS":
        # One line: the error email's subject begins with it.
        await ctx.errors.report("; ".join([summary, *named]))
    if ack_error is not None:
        await ctx.errors.report(ack_error)
    complete = [summary]
    if named:
        complete += [f"{_rows(outcome.rows_set_aside)} set aside:", *(f"  {row}" for row in named)]
    if ack_error is not None:
        complete.append(ack_error)
    # Sent when its flag says so, after a failure too: the failure's error email went above.
    await ctx.notices.process_complete(
        outcome.code if ack_error is None else "FAILURE", "\n".join(complete), failed=False
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
