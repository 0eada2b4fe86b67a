"""The intake's cut of a file into segments: rows of plain text go the flow's column-wise
way, anything else the csv module's, and both give the same segments and the same refusals."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from derms_bridge.engine.files import _cut, _Scan, _Upload, segment_body
from derms_bridge.flows.event_device_reservation import FLOW, to_reserve_device
from derms_bridge.flows.ports import segment_json
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.event_device_reservation import ReservationMessage

MESSAGE = ReservationMessage.model_validate(
    {
        "drmsInstanceId": "DRMS-1",
        "messageId": "RSV-1",
        "eventId": 'EV-"1"/é',
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
)
HEADER = b"recordId,nicId,headEndSystemId,reservationStartDateTime,reservationEndDateTime"
SEGMENT_ROWS = 3


def row(number: int, nic_id: str | None = None, starts: str = "2026-12-01T14:00:00Z") -> bytes:
    nic = f"NIC-{number:04d}" if nic_id is None else nic_id
    return f"{number},{nic},ECOBEE,{starts},2026-12-01T18:00:00+00:00".encode()


def cut(
    content: bytes, *, plain: bool, size: int = SEGMENT_ROWS
) -> tuple[list[tuple[str, int, int]], _Scan]:
    """The segments' bodies as they will be sent, the lines they start on and their rows."""
    flow = (
        FLOW
        if plain
        else dataclasses.replace(FLOW, plain_row_pattern=None, plain_segment_request=None)
    )
    lines = _Upload(io.BytesIO(content))
    assert (lines.line() or b"").rstrip(b"\r") == HEADER
    scan = _Scan()
    emitted: list[tuple[str, int, int]] = []
    _cut(
        lines,
        flow,
        Lookups(),
        size,
        scan,
        lambda rows_csv, first_line, rows: emitted.append(
            (segment_body(flow, MESSAGE, rows_csv, Lookups()), first_line, rows)
        ),
    )
    return emitted, scan


def file_of(rows: list[bytes], *, newline: bytes = b"\n", bom: bool = False) -> bytes:
    text = newline.join([HEADER, *rows]) + newline
    return b"\xef\xbb\xbf" + text if bom else text


PLAIN_ROWS_RANGE = range(1, 9)
PLAIN_ROWS = [row(n) for n in PLAIN_ROWS_RANGE]

FILES: dict[str, bytes] = {
    "plain": file_of(PLAIN_ROWS),
    "crlf and a byte order mark": file_of(PLAIN_ROWS, newline=b"\r\n", bom=True),
    "no line feed at the end": file_of(PLAIN_ROWS)[:-1],
    "a quoted field": file_of([*PLAIN_ROWS[:4], b'5,"NIC,\n0005",ECOBEE,a,b', *PLAIN_ROWS[5:]]),
    "a carriage return inside a row": file_of(
        [*PLAIN_ROWS[:4], row(5, nic_id="NIC\r"), *PLAIN_ROWS[5:]]
    ),
    "a blank line": file_of([*PLAIN_ROWS[:4], b"", *PLAIN_ROWS[4:]]),
    "non-ASCII": file_of([*PLAIN_ROWS[:7], row(8, nic_id="NIC-é")]),
    "a backslash": file_of([row(1, nic_id="NIC\\1"), *PLAIN_ROWS[1:]]),
    "a nicId of 101 characters": file_of([*PLAIN_ROWS[:6], row(7, nic_id="N" * 101)]),
    "an empty nicId": file_of([row(1, nic_id=""), *PLAIN_ROWS[1:]]),
    "not UTC": file_of([*PLAIN_ROWS[:3], row(4, starts="2026-12-01T14:00:00+01:00")]),
    "not a date": file_of([*PLAIN_ROWS[:3], row(4, starts="2026-13-01T14:00:00Z")]),
    "a missing field": file_of([*PLAIN_ROWS[:5], b"6,NIC-6,ECOBEE,2026-12-01T14:00:00Z"]),
    "two reservation windows": file_of(
        [
            row(n, starts="2026-12-01T15:00:00Z" if n % 2 else "2026-12-01T14:00:00Z")
            for n in PLAIN_ROWS_RANGE
        ]
    ),
    # More distinct date-times than the plain way learns: the csv module reads the rest.
    "a date-time a row": file_of(
        [row(n, starts=f"2026-12-01T14:{n:02d}:00Z") for n in range(1, 71)]
    ),
    "a missing and an extra field": file_of(
        [*PLAIN_ROWS[:5], b"6,NIC-6,ECOBEE,2026-12-01T14:00:00Z", b"7,a,b,c,d,e"]
    ),
}


@pytest.mark.parametrize("size", [1, SEGMENT_ROWS])
@pytest.mark.parametrize("name", FILES)
def test_the_plain_way_cuts_as_the_csv_module_does(name: str, size: int) -> None:
    plain_segments, plain_scan = cut(FILES[name], plain=True, size=size)
    csv_segments, csv_scan = cut(FILES[name], plain=False, size=size)
    assert (plain_scan.rows, plain_scan.bad_rows) == (csv_scan.rows, csv_scan.bad_rows)
    if not csv_scan.bad_rows:
        # A refused file's segments are not kept, however many went before its bad row.
        assert plain_segments == csv_segments


def test_plain_rows_make_the_flows_own_body() -> None:
    segments, scan = cut(FILES["plain"], plain=True)
    assert scan.bad_rows == []
    assert [(first_line, count) for _body, first_line, count in segments] == [
        (2, 3),
        (5, 3),
        (8, 2),
    ]
    rows = [line.decode().split(",") for line in PLAIN_ROWS[:3]]
    assert segments[0][0] == segment_json(to_reserve_device(MESSAGE, rows, Lookups()))
    body: dict[str, Any] = json.loads(segments[0][0])
    assert body["deviceList"][0]["nicId"] == "NIC-0001"


def test_bytes_that_are_not_utf8_refuse_the_file_either_way() -> None:
    content = file_of([*PLAIN_ROWS[:5], b"6,NIC-\xff,ECOBEE,a,b"])
    for plain in (True, False):
        _segments, scan = cut(content, plain=plain)
        [refusal] = scan.bad_rows
        assert "the file cannot be read as CSV: 'utf-8' codec can't decode" in refusal


def test_a_bad_row_after_plain_segments_refuses_the_file_naming_its_line() -> None:
    segments, scan = cut(FILES["a nicId of 101 characters"], plain=True)
    assert scan.bad_rows == ["line 8: nicId: 101 characters, CPMCS takes at most 100"]
    assert len(segments) == 2
