"""Flow 8, Event Device Outcome (OUTL-BA-DRMS_DACS_EVT_OUTC_TRNFR).

After events end, DERMS sends every participating device's outcome as a CSV (one file may
hold several events; step 1: the header and every row checked, `fit_row`: a row that
cannot go is set aside, the others go). The hub checks CPMCS is up (step 2,
F1-HealthCheckRest), sends the outcomes to postEventOutcome in segments, several at once
(step 3, `send_segment`), and acknowledges the whole file to DERMS once (steps 4 and 5,
`acknowledge`): SUCCESS, ERROR naming the rows set aside, or FAILURE. This module says
what each step does and sends; the engine (engine/file_jobs/) runs each step when it is
due.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from itertools import repeat
from typing import Any

from derms_bridge.catalog import BY_KEY
from derms_bridge.errors import LookupMiss
from derms_bridge.flows import file_job_steps
from derms_bridge.flows.csv_rows import length_problem, utc_field
from derms_bridge.flows.ports import (
    PLAIN_FIELD_BYTE,
    Acknowledgement,
    CpmcsSegmentApi,
    CsvRow,
    FileFlow,
    FileJobContext,
    FileOutcome,
    plain_field,
    segment_json,
)
from derms_bridge.flows.text_fit import fit_to
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.event_device_outcome import (
    OUTCOME_HEADER,
    DeviceOutcome,
    OutcomeMessage,
    PostEventOutcomeRequest,
)

EVENT_ID_LIMIT = 120
NIC_ID_LIMIT = 100
HEAD_END_SYSTEM_LIMIT = 50
ERROR_MESSAGE_LIMIT = 100


def business_keys(message: OutcomeMessage) -> list[tuple[str, str]]:
    keys = [("messageId", message.messageId)]
    if message.fileName:
        keys.append(("fileName", message.fileName))
    if message.drmsInstanceId:
        keys.append(("drmsInstanceId", message.drmsInstanceId))
    return keys


def fit_row(row: CsvRow, lookups: Lookups) -> CsvRow | str:
    """Step 3's precondition: the row as postEventOutcome takes it, its participation times
    in UTC with Z and its errorMessage cut to CPMCS's 100 characters (ending in "..."), or
    why CPMCS would refuse it."""
    record, event_id, nic_id, head_end, outcome, starts, ends, error_message = row
    problem = (
        length_problem("eventId", event_id, EVENT_ID_LIMIT)
        or length_problem("nicId", nic_id, NIC_ID_LIMIT)
        or length_problem("headEndSystemId", head_end, HEAD_END_SYSTEM_LIMIT)
    )
    if problem is not None:
        return problem
    try:
        starts = utc_field("participationStartDateTime", starts)
        ends = utc_field("participationEndDateTime", ends)
    except ValueError as exc:
        return str(exc)
    try:
        lookups.translate("EventOutcome", outcome)
    except LookupMiss as miss:
        return f"outcome: {miss}"
    return [
        record,
        event_id,
        nic_id,
        head_end,
        outcome,
        starts,
        ends,
        fit_to(error_message, ERROR_MESSAGE_LIMIT),
    ]


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


_PLAIN_OUTCOME = re.compile(rb"%s+" % PLAIN_FIELD_BYTE)

_DEVICE_JSON = (
    b'{"eventExternalIdentifier":"%s","nicId":"%s","headEndSystem":"%s","outcome":%s,'
    b'"participationStartDateTime":"%s","participationEndDateTime":"%s"%s}'
)
_ERROR_MESSAGE_JSON = b',"errorMessage":"%s"'


@functools.lru_cache(maxsize=4)
def _device_list_json(count: int) -> bytes:
    return b",".join(repeat(_DEVICE_JSON, count))


class _TranslatedOutcomes(dict[bytes, bytes]):
    """EventOutcome's CPMCS values as JSON, by DERMS value. A value it does not know raises
    LookupMiss, as translate does: the lookups may have changed since the file's intake."""

    def __init__(self, lookups: Lookups) -> None:
        table = lookups.tables.get("EventOutcome")
        super().__init__(
            (derms.encode(), json.dumps(cpmcs).encode())
            for derms, cpmcs in (table.rows.items() if table else ())
        )
        self._lookups = lookups

    def __missing__(self, outcome: bytes) -> bytes:
        return json.dumps(self._lookups.translate("EventOutcome", outcome.decode())).encode()


def plain_row_pattern(times: bytes, lookups: Lookups) -> bytes:
    """The expression of one row of plain text that fit_row takes unchanged: `times` are the
    date-times already found in CPMCS's form, the outcomes those of EventOutcome that are
    plain text themselves (any other one could only stand in a row that is not)."""
    table = lookups.tables.get("EventOutcome")
    known = [
        re.escape(outcome.encode())
        for outcome in (table.rows if table else ())
        if _PLAIN_OUTCOME.fullmatch(outcome.encode())
    ]
    return b",".join(
        (
            plain_field(0, csv.field_size_limit()),
            plain_field(1, EVENT_ID_LIMIT),
            plain_field(1, NIC_ID_LIMIT),
            plain_field(1, HEAD_END_SYSTEM_LIMIT),
            b"(?:%s)" % (b"|".join(known) or b"(?!)"),
            times,
            times,
            plain_field(0, ERROR_MESSAGE_LIMIT),
        )
    )


def plain_post_event_outcome(
    message: OutcomeMessage, fields: list[bytes], lookups: Lookups
) -> bytes:
    """Step 3 for rows of plain text: to_post_event_outcome's body written by one format of
    bytes, in C, instead of a dict a row; the outcomes translated, and errorMessage left out
    of a device whose row has none."""
    width = len(OUTCOME_HEADER)
    devices = fields.copy()
    devices[4::width] = map(_TranslatedOutcomes(lookups).__getitem__, fields[4::width])
    devices[7::width] = [
        _ERROR_MESSAGE_JSON % error_message if error_message else b""
        for error_message in fields[7::width]
    ]
    del devices[0::width]
    envelope, _, end = (
        segment_json(to_post_event_outcome(message, [], lookups)).encode().rpartition(b"[]")
    )
    devices_json = _device_list_json(len(devices) // (width - 1)) % tuple(devices)
    return b"%s[%s]%s" % (envelope, devices_json, end)


async def send_segment(cpmcs: CpmcsSegmentApi, body: bytes) -> str | None:
    """Step 3: one segment's outcomes (to_post_event_outcome's body, or
    plain_post_event_outcome's for rows of plain text) to CPMCS's postEventOutcome; why
    CPMCS refused them, if it did."""
    return await file_job_steps.send_segment(cpmcs, "postEventOutcome", body)


async def acknowledge(
    ctx: FileJobContext, message: OutcomeMessage, outcome: FileOutcome
) -> Acknowledgement:
    """Steps 4 and 5: DERMS's deviceOutcomeAck gets the file's one MsgAck (SUCCESS once
    CPMCS took every segment and no row was set aside, ERROR naming the rows set aside,
    else FAILURE with why); then the emails."""
    summary = file_job_steps.run_summary(outcome, "postEventOutcome")
    ack = file_job_steps.acknowledgement(message.messageId, outcome, summary)
    return await file_job_steps.acknowledge(ctx, "deviceOutcomeAck", ack, outcome, summary)


async def acknowledge_again(ctx: FileJobContext, msg_ack: Any) -> str | None:
    """The run's MsgAck, as it went, to DERMS's deviceOutcomeAck again; why DERMS did not
    take it, if so."""
    return await file_job_steps.acknowledge_again(ctx, "deviceOutcomeAck", msg_ack)


FLOW = FileFlow(
    info=BY_KEY["event_device_outcome"],
    message_model=OutcomeMessage,
    header=OUTCOME_HEADER,
    business_keys=business_keys,
    fit_row=fit_row,
    check_health=file_job_steps.check_cpmcs_health,
    segment_request=to_post_event_outcome,
    send_segment=send_segment,
    acknowledge=acknowledge,
    acknowledge_again=acknowledge_again,
    route="/device-outcome-to-dacs",
    plain_row_pattern=plain_row_pattern,
    plain_time_columns=(5, 6),
    plain_segment_request=plain_post_event_outcome,
)
