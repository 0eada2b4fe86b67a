"""Flow 8, Event Device Outcome (OUTL-BA-DRMS_DACS_EVT_OUTC_TRNFR).

After events end, DERMS sends every participating device's outcome as a CSV (one
file may hold several events). The hub checks CPMCS is up, sends the outcomes to
postEventOutcome in segments, several at once, and acknowledges the whole file to
DERMS once. The engine (engine/files.py) runs these steps.
"""

from __future__ import annotations

from typing import Literal

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import LookupMiss
from derms_bridge.flows.csv_rows import length_problem, utc_problem
from derms_bridge.flows.ports import CsvRow, FileFlow
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.common import AckMessage, AckResponse
from derms_bridge.schemas.event_device_outcome import (
    DeviceOutcome,
    OutcomeMessage,
    PostEventOutcomeRequest,
)

HEADER = (
    "recordId",
    "eventId",
    "nicId",
    "headEndSystemId",
    "outcome",
    "participationStartDateTime",
    "participationEndDateTime",
    "errorMessage",
)


def business_keys(message: OutcomeMessage) -> list[tuple[str, str]]:
    keys = [("messageId", message.messageId)]
    if message.fileName:
        keys.append(("fileName", message.fileName))
    if message.drmsInstanceId:
        keys.append(("drmsInstanceId", message.drmsInstanceId))
    return keys


def row_problem(row: CsvRow, lookups: Lookups) -> str | None:
    """Step 3's precondition: a row CPMCS would refuse stops the whole file."""
    _record, event_id, nic_id, head_end, outcome, starts, ends, error_message = row
    problem = (
        length_problem("eventId", event_id, 120)
        or length_problem("nicId", nic_id, 100)
        or length_problem("headEndSystemId", head_end, 50)
        or utc_problem("participationStartDateTime", starts)
        or utc_problem("participationEndDateTime", ends)
        or length_problem("errorMessage", error_message, 100, required=False)
    )
    if problem is not None:
        return problem
    try:
        lookups.translate("EventOutcome", outcome)
    except LookupMiss as miss:
        return f"outcome: {miss}"
    return None


def to_post_event_outcome(
    _message: OutcomeMessage, rows: list[CsvRow], lookups: Lookups
) -> PostEventOutcomeRequest:
    """Step 3: one segment of the file in CPMCS's postEventOutcome format."""
    outcomes: list[DeviceOutcome] = []
    for _record, event_id, nic_id, head_end, outcome, starts, ends, error_message in rows:
        device: DeviceOutcome = {
            "eventExternalIdentifier": event_id,
            "nicId": nic_id,
            "headEndSystem": head_end,
            "outcome": lookups.translate("EventOutcome", outcome),
            "participationStartDateTime": starts,
            "participationEndDateTime": ends,
        }
        if error_message:
            device["errorMessage"] = error_message
        outcomes.append(device)
    return {"postOutcomeList": outcomes}


def acknowledgement(
    message: OutcomeMessage, code: Literal["SUCCESS", "FAILURE"], value: str
) -> AckMessage:
    """Steps 2, 3 and 4: the one MsgAck for DERMS's /device-outcome-ack."""
    return AckMessage.of([AckResponse(id=message.messageId, value=value, responseCode=code)])


FLOW = FileFlow(
    info=BY_KEY["event_device_outcome"],
    message_model=OutcomeMessage,
    header=HEADER,
    business_keys=business_keys,
    row_problem=row_problem,
    segment_operation="postEventOutcome",
    segment_request=to_post_event_outcome,
    ack_operation="deviceOutcomeAck",
    acknowledgement=acknowledgement,
    route="/device-outcome-to-dacs",
)
