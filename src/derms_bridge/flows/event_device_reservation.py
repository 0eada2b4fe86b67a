"""Flow 7, Event Device Reservation (OUTL_BA_DRMS_DACS_EVT_DVCRESV).

DERMS sends a stage of an event with a CSV of the devices reserved for it (step 1: the
header and every row checked, `fit_row`: a row that cannot go is set aside, the others
go). The hub checks CPMCS is up (step 2, F1-HealthCheckRest), sends the devices to
reserveDevice in segments of `segments.size` rows, several at once (step 3,
`send_segment`), and acknowledges the whole file to DERMS once (steps 4 and 5,
`acknowledge`): SUCCESS when every segment was taken, ERROR naming the rows set aside
(which DERMS must not retry), FAILURE when a segment was not taken, so that DERMS
retries. This module says what each step does and sends; the engine (engine/file_jobs/)
runs each step when it is due.
"""

from __future__ import annotations

import csv
import functools
from itertools import repeat
from typing import Any

from derms_bridge.catalog import BY_KEY
from derms_bridge.flows import file_job_steps
from derms_bridge.flows.csv_rows import length_problem, utc_field
from derms_bridge.flows.ports import (
    Acknowledgement,
    CpmcsSegmentApi,
    CsvRow,
    FileFlow,
    FileJobContext,
    FileOutcome,
    plain_field,
    segment_json,
)
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.event_device_reservation import (
    RESERVATION_HEADER,
    ReservationMessage,
    ReservedDevice,
    ReserveDeviceRequest,
)

NIC_ID_LIMIT = 100
HEAD_END_SYSTEM_LIMIT = 50


def business_keys(message: ReservationMessage) -> list[tuple[str, str]]:
    keys = [("messageId", message.messageId), ("eventId", message.eventId)]
    if message.stageId:
        keys.append(("stageId", message.stageId))
    if message.drmsInstanceId:
        keys.append(("drmsInstanceId", message.drmsInstanceId))
    return keys


def fit_row(row: CsvRow, _lookups: Lookups) -> CsvRow | str:
    """Step 3's precondition: the row as reserveDevice takes it, its reservation times in UTC
    with Z (an empty one stays empty: CPMCS applies the event's end date-time), or why
    CPMCS would refuse it."""
    record, nic_id, head_end, starts, ends = row
    problem = length_problem("nicId", nic_id, NIC_ID_LIMIT) or length_problem(
        "headEndSystemId", head_end, HEAD_END_SYSTEM_LIMIT
    )
    if problem is not None:
        return problem
    try:
        return [
            record,
            nic_id,
            head_end,
            utc_field("reservationStartDateTime", starts, required=False),
            utc_field("reservationEndDateTime", ends, required=False),
        ]
    except ValueError as exc:
        return str(exc)


def _device(nic_id: str, head_end: str, starts: str, ends: str) -> ReservedDevice:
    device: ReservedDevice = {"nicId": nic_id, "headEndSystem": head_end}
    if starts:
        device["reservationStartDateTime"] = starts
    if ends:
        device["reservationEndDateTime"] = ends
    return device


def to_reserve_device(
    message: ReservationMessage, rows: list[CsvRow], _lookups: Lookups
) -> ReserveDeviceRequest:
    """Step 3: one segment of the file in CPMCS's reserveDevice format; a reservation time
    the row leaves empty is left out."""
    return {
        "eventExternalIdentifier": message.eventId,
        "eventStartDateTime": message.eventStartDateTime,
        "eventEndDateTime": message.eventEndDateTime,
        "deviceList": [
            _device(nic_id, head_end, starts, ends)
            for _record, nic_id, head_end, starts, ends in rows
        ],
    }


_DEVICE_JSON = (
    b'{"nicId":"%s","headEndSystem":"%s",'
    b'"reservationStartDateTime":"%s","reservationEndDateTime":"%s"}'
)


@functools.lru_cache(maxsize=4)
def _device_list_json(count: int) -> bytes:
    return b",".join(repeat(_DEVICE_JSON, count))


def plain_row_pattern(times: bytes, _lookups: Lookups) -> bytes:
    """The expression of one row of plain text that fit_row takes unchanged: `times` are the
    date-times already found in CPMCS's form (an empty one is left to fit_row)."""
    return b",".join(
        (
            plain_field(0, csv.field_size_limit()),
            plain_field(1, NIC_ID_LIMIT),
            plain_field(1, HEAD_END_SYSTEM_LIMIT),
            times,
            times,
        )
    )


def plain_reserve_device(
    message: ReservationMessage, fields: list[bytes], lookups: Lookups
) -> bytes:
    """Step 3 for rows of plain text: to_reserve_device's body written by one format of
    bytes, in C, instead of a dict a row; by to_reserve_device for a segment with a
    reservation time left empty."""
    width = len(RESERVATION_HEADER)
    if b"" in fields[3::width] or b"" in fields[4::width]:
        rows = [
            [field.decode() for field in fields[first : first + width]]
            for first in range(0, len(fields), width)
        ]
        return segment_json(to_reserve_device(message, rows, lookups)).encode()
    devices = fields.copy()
    del devices[0::width]
    envelope, _, end = (
        segment_json(to_reserve_device(message, [], lookups)).encode().rpartition(b"[]")
    )
    devices_json = _device_list_json(len(devices) // (width - 1)) % tuple(devices)
    return b"%s[%s]%s" % (envelope, devices_json, end)


async def send_segment(cpmcs: CpmcsSegmentApi, body: bytes) -> str | None:
    """Step 3: one segment's devices (to_reserve_device's body, or plain_reserve_device's
    for rows of plain text) to CPMCS's reserveDevice; why CPMCS refused them, if it did."""
    return await file_job_steps.send_segment(cpmcs, "reserveDevice", body)


async def acknowledge(
    ctx: FileJobContext, message: ReservationMessage, outcome: FileOutcome
) -> Acknowledgement:
    """Steps 4 and 5: DERMS's deviceReservationAck gets the file's one MsgAck (SUCCESS once
    CPMCS took every segment and no row was set aside, ERROR naming the rows set aside,
    else FAILURE with why); then the emails."""
    summary = file_job_steps.run_summary(outcome, "reserveDevice")
    ack = file_job_steps.acknowledgement(message.messageId, outcome, summary)
    return await file_job_steps.acknowledge(ctx, "deviceReservationAck", ack, outcome, summary)


async def acknowledge_again(ctx: FileJobContext, msg_ack: Any) -> str | None:
    """The run's MsgAck, as it went, to DERMS's deviceReservationAck again; why DERMS did not
    take it, if so."""
    return await file_job_steps.acknowledge_again(ctx, "deviceReservationAck", msg_ack)


FLOW = FileFlow(
    info=BY_KEY["event_device_reservation"],
    message_model=ReservationMessage,
    header=RESERVATION_HEADER,
    business_keys=business_keys,
    fit_row=fit_row,
    check_health=file_job_steps.check_cpmcs_health,
    segment_request=to_reserve_device,
    send_segment=send_segment,
    acknowledge=acknowledge,
    acknowledge_again=acknowledge_again,
    route="/device-reservation-to-dacs",
    plain_row_pattern=plain_row_pattern,
    plain_time_columns=(3, 4),
    plain_segment_request=plain_reserve_device,
)
