"""The intake's cut of a file into segments: rows of plain text go the flow's column-wise
way, anything else the csv module's, and both give the same segments and set aside the same
rows, for a reservation file (flow 7) and an outcome file (flow 8)."""

from __future__ import annotations

import dataclasses
import io
import json
import zlib
from typing import Any

import pytest
from pydantic import BaseModel

from derms_bridge.engine.file_jobs.csv_cutter import (
    RowScan,
    UploadReader,
    cut_segments,
    segment_body,
)
from derms_bridge.errors import LookupMiss
from derms_bridge.flows import event_device_outcome
from derms_bridge.flows.event_device_outcome import to_post_event_outcome
from derms_bridge.flows.event_device_reservation import FLOW, to_reserve_device
from derms_bridge.flows.ports import CsvRow, FileFlow, segment_json
from derms_bridge.lookups import Lookups, load_lookups, shipped_lookups_dir
from derms_bridge.schemas.event_device_outcome import OutcomeMessage
from derms_bridge.schemas.event_device_reservation import ReservationMessage
from tests.csv_files import ERROR_OUTCOME_MESSAGE, OUTCOME_HEADER, outcome_rows

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


def row(
    number: int,
    nic_id: str | None = None,
    starts: str = "2026-12-01T14:00:00Z",
    ends: str = "2026-12-01T18:00:00Z",
) -> bytes:
    nic = f"NIC-{number:04d}" if nic_id is None else nic_id
    return f"{number},{nic},ECOBEE,{starts},{ends}".encode()


def set_aside_of(scan: RowScan) -> tuple[int, list[str], bytes]:
    """The rows set aside: how many, as named, and as they came."""
    kept = scan.set_aside.kept()
    lines = b"" if kept.lines_zlib is None else zlib.decompress(kept.lines_zlib)
    return kept.count, [str(named) for named in kept.named], lines


def cut(
    content: bytes, *, plain: bool, size: int = SEGMENT_ROWS
) -> tuple[list[tuple[bytes, int, int]], RowScan]:
    """The segments' bodies as they will be sent, the lines they start on and their rows."""
    return cut_with(FLOW, MESSAGE, Lookups(), content, plain=plain, size=size)


def cut_with(
    flow: FileFlow[Any],
    message: BaseModel,
    lookups: Lookups,
    content: bytes,
    *,
    plain: bool,
    size: int = SEGMENT_ROWS,
) -> tuple[list[tuple[bytes, int, int]], RowScan]:
    if not plain:
        flow = dataclasses.replace(flow, plain_row_pattern=None, plain_segment_request=None)
    lines = UploadReader(io.BytesIO(content))
    assert (lines.line() or b"").rstrip(b"\r") == ",".join(flow.header).encode()
    scan = RowScan()
    emitted: list[tuple[bytes, int, int]] = []
    cut_segments(
        lines,
        flow,
        lookups,
        size,
        scan,
        lambda rows_csv, first_line, rows: emitted.append(
            (segment_body(flow, message, rows_csv, lookups), first_line, rows)
        ),
    )
    return emitted, scan


def file_of(
    rows: list[bytes], *, newline: bytes = b"\n", bom: bool = False, header: bytes = HEADER
) -> bytes:
    text = newline.join([header, *rows]) + newline
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
    "UTC as +00:00": file_of([row(n, ends="2026-12-01T18:00:00+00:00") for n in PLAIN_ROWS_RANGE]),
    "an empty reservation time": file_of(
        [*PLAIN_ROWS[:2], row(3, starts=""), row(4, ends=""), *PLAIN_ROWS[4:]]
    ),
    "no time zone": file_of([*PLAIN_ROWS[:3], row(4, starts="2026-12-01T14:00:00")]),
    "bytes that are not UTF-8": file_of([*PLAIN_ROWS[:5], b"6,NIC-\xff,ECOBEE,a,b"]),
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
    assert plain_scan.rows == csv_scan.rows
    assert set_aside_of(plain_scan) == set_aside_of(csv_scan)
    assert plain_segments == csv_segments


def test_plain_rows_make_the_flows_own_body() -> None:
    segments, scan = cut(FILES["plain"], plain=True)
    assert scan.set_aside.count == 0
    assert [(first_line, count) for _body, first_line, count in segments] == [
        (2, 3),
        (5, 3),
        (8, 2),
    ]
    rows = [line.decode().split(",") for line in PLAIN_ROWS[:3]]
    assert segments[0][0] == segment_json(to_reserve_device(MESSAGE, rows, Lookups())).encode()
    body: dict[str, Any] = json.loads(segments[0][0])
    assert body["deviceList"][0]["nicId"] == "NIC-0001"


def test_bytes_that_are_not_utf8_set_their_row_aside_either_way() -> None:
    content = file_of([*PLAIN_ROWS[:5], b"6,NIC-\xff,ECOBEE,a,b", *PLAIN_ROWS[6:]])
    for plain in (True, False):
        segments, scan = cut(content, plain=plain)
        count, [named], lines = set_aside_of(scan)
        assert (count, lines) == (1, b"6,NIC-\xff,ECOBEE,a,b\n")
        assert named.startswith("line 7: not a CSV row: 'utf-8' codec can't decode")
        assert scan.rows == 7
        assert sum(rows for _body, _line, rows in segments) == 7


def test_a_bad_row_after_plain_segments_is_set_aside_naming_its_line() -> None:
    segments, scan = cut(FILES["a nicId of 101 characters"], plain=True)
    assert set_aside_of(scan) == (
        1,
        ["line 8 (recordId 7): nicId: 101 characters, CPMCS takes at most 100"],
        row(7, nic_id="N" * 101) + b"\n",
    )
    assert [(line, rows) for _body, line, rows in segments] == [(2, 3), (5, 3)]


def test_rows_set_aside_leave_every_other_row_in_full_segments_either_way() -> None:
    bad = {4: row(4, nic_id=""), 5: b"5,a,b", 9: row(9, starts="tomorrow")}
    content = file_of([bad.get(n, row(n)) for n in range(1, 13)])
    for plain in (True, False):
        segments, scan = cut(content, plain=plain)
        count, named, lines = set_aside_of(scan)
        assert count == 3
        assert named == [
            "line 5 (recordId 4): nicId: is empty",
            "line 6 (recordId 5): has 3 fields, the header has 5",
            "line 10 (recordId 9): reservationStartDateTime: 'tomorrow' is not an ISO 8601 "
            "date-time",
        ]
        assert lines == b"\n".join(bad.values()) + b"\n"
        assert [(line, rows) for _body, line, rows in segments] == [(2, 3), (7, 3), (11, 3)]
        nic_ids = [d["nicId"] for body, _line, _rows in segments for d in devices(body)]
        assert nic_ids == [f"NIC-{n:04d}" for n in range(1, 13) if n not in bad]


def test_the_plain_way_goes_on_after_a_line_it_does_not_take() -> None:
    def row_by_row(_row: CsvRow, _lookups: Lookups) -> str:
        return "read by the csv module"

    rows = [row(n) for n in range(1, 40)]
    rows[19] = b"20,NIC-0020"
    flow = dataclasses.replace(FLOW, fit_row=row_by_row)
    segments, scan = cut_with(flow, MESSAGE, Lookups(), file_of(rows), plain=True)

    assert set_aside_of(scan)[:2] == (1, ["line 21 (recordId 20): has 2 fields, the header has 5"])
    assert scan.rows == 38
    # The segment holding row 19 runs on past the line set aside, to rows 21 and 22.
    expected = [(2 + 3 * n + (n > 6), 3) for n in range(12)] + [(39, 2)]
    assert [(line, rows) for _body, line, rows in segments] == expected


def devices(body: bytes) -> list[dict[str, str]]:
    found: list[dict[str, str]] = json.loads(body)["deviceList"]
    return found


def test_a_reservation_time_is_sent_in_utc_with_z_or_left_out_when_empty() -> None:
    content = file_of(
        [
            row(1, starts="2026-12-01T16:00:00+02:00", ends="2026-12-01T18:00:00+00:00"),
            row(2, starts="2026-12-01T09:30:00.250-05:00"),
            row(3, starts="", ends=""),
        ]
    )
    for plain in (True, False):
        segments, scan = cut(content, plain=plain)
        assert scan.set_aside.count == 0
        [(body, _line, _rows)] = segments
        assert devices(body) == [
            {
                "nicId": "NIC-0001",
                "headEndSystem": "ECOBEE",
                "reservationStartDateTime": "2026-12-01T14:00:00Z",
                "reservationEndDateTime": "2026-12-01T18:00:00Z",
            },
            {
                "nicId": "NIC-0002",
                "headEndSystem": "ECOBEE",
                "reservationStartDateTime": "2026-12-01T14:30:00.250Z",
                "reservationEndDateTime": "2026-12-01T18:00:00Z",
            },
            {"nicId": "NIC-0003", "headEndSystem": "ECOBEE"},
        ]


# Flow 8: outcome files, checked and translated by the EventOutcome lookup as shipped, with
# outcomes added that no plain row can hold, or that the expression must take as they stand.
OUTCOME_MESSAGE = OutcomeMessage.model_validate({"messageId": "OUT-1", "fileName": "o.csv"})
OUTCOME_FLOW = event_device_outcome.FLOW
SHIPPED = load_lookups(shipped_lookups_dir())
EVENT_OUTCOME = SHIPPED.tables["EventOutcome"]
OUTCOME_LOOKUPS = dataclasses.replace(
    SHIPPED,
    tables={
        **SHIPPED.tables,
        "EventOutcome": dataclasses.replace(
            EVENT_OUTCOME,
            rows={
                **EVENT_OUTCOME.rows,
                "PARTIAL,LATE": "D1PL",
                "ÉCHEC": "D1EC",
                "N/A (late).*": "D1NA",
                "QUOTED": 'D1"Q\\é',
            },
        ),
    },
)
OUTCOME_HEADER_LINE = ",".join(OUTCOME_HEADER).encode()
THREE_EVENTS_ROWS = list(outcome_rows(10, event_ids=("EV-1", "EV-2", "EV-3")))
THREE_EVENTS = [",".join(row).encode() for row in THREE_EVENTS_ROWS]


def outcome_row(number: int, **fields: str) -> bytes:
    """Row `number` of THREE_EVENTS with the fields named (as the header names them) written
    as given, quotes and all."""
    values = dict(zip(OUTCOME_HEADER, THREE_EVENTS_ROWS[number - 1], strict=True)) | fields
    return ",".join(values.values()).encode()


def outcome_file(rows: list[bytes], *, newline: bytes = b"\n", bom: bool = False) -> bytes:
    return file_of(rows, newline=newline, bom=bom, header=OUTCOME_HEADER_LINE)


def cut_outcomes(content: bytes, *, plain: bool) -> tuple[list[tuple[bytes, int, int]], RowScan]:
    return cut_with(OUTCOME_FLOW, OUTCOME_MESSAGE, OUTCOME_LOOKUPS, content, plain=plain)


def with_fields(number: int, **fields: str) -> list[bytes]:
    """THREE_EVENTS with outcome_row(number, **fields) in place of row `number`."""
    return [outcome_row(n, **fields) if n == number else r for n, r in enumerate(THREE_EVENTS, 1)]


OUTCOME_FILES: dict[str, bytes] = {
    "outcomes of three events": outcome_file(THREE_EVENTS),
    "crlf and a byte order mark": outcome_file(THREE_EVENTS, newline=b"\r\n", bom=True),
    "no line feed at the end": outcome_file(THREE_EVENTS)[:-1],
    "an unknown outcome": outcome_file(with_fields(4, outcome="MAYBE")),
    "an outcome in lower case": outcome_file(with_fields(2, outcome="success")),
    "a space before an outcome": outcome_file(with_fields(2, outcome=" SUCCESS")),
    "an outcome with a comma, quoted": outcome_file(with_fields(5, outcome='"PARTIAL,LATE"')),
    "an outcome with a comma, unquoted": outcome_file(with_fields(5, outcome="PARTIAL,LATE")),
    "a non-ASCII outcome": outcome_file(with_fields(6, outcome="ÉCHEC")),
    "an outcome of the expression's characters": outcome_file(
        with_fields(6, outcome="N/A (late).*")
    ),
    "the expression's characters matching another outcome": outcome_file(
        with_fields(6, outcome="N/A (late)...")
    ),
    "a CPMCS outcome that JSON escapes": outcome_file(with_fields(7, outcome="QUOTED")),
    "an errorMessage of 100 characters": outcome_file(with_fields(4, errorMessage="E" * 100)),
    "an errorMessage of 101 characters": outcome_file(with_fields(4, errorMessage="E" * 101)),
    "an errorMessage on a SUCCESS row": outcome_file(with_fields(1, errorMessage="late")),
    "a quoted errorMessage with a comma": outcome_file(
        with_fields(4, errorMessage='"Timed out, retried"')
    ),
    "a quoted errorMessage with a quote": outcome_file(
        with_fields(4, errorMessage='"Said ""no"""')
    ),
    "a non-ASCII errorMessage": outcome_file(with_fields(9, errorMessage="Échec de la commande")),
    "a backslash in an errorMessage": outcome_file(with_fields(9, errorMessage="C:\\hub")),
    "an eventId of 120 characters": outcome_file(with_fields(3, eventId="V" * 120)),
    "an eventId of 121 characters": outcome_file(with_fields(3, eventId="V" * 121)),
    "an empty eventId": outcome_file(with_fields(3, eventId="")),
    "an empty headEndSystemId": outcome_file(with_fields(3, headEndSystemId="")),
    "a headEndSystemId of 51 characters": outcome_file(with_fields(3, headEndSystemId="H" * 51)),
    "not UTC": outcome_file(with_fields(8, participationEndDateTime="2026-12-01T18:00:00+01:00")),
    "UTC as +00:00": outcome_file(
        with_fields(8, participationEndDateTime="2026-12-01T18:00:00+00:00")
    ),
    "not a date": outcome_file(with_fields(8, participationStartDateTime="2026-13-01T14:00:00Z")),
    "a missing field": outcome_file([*THREE_EVENTS[:5], THREE_EVENTS[5].rpartition(b",")[0]]),
    "an extra field": outcome_file([*THREE_EVENTS[:5], THREE_EVENTS[5] + b",extra"]),
    "a blank line": outcome_file([*THREE_EVENTS[:4], b"", *THREE_EVENTS[4:]]),
    "plain rows and rows that are not": outcome_file(
        [
            *THREE_EVENTS[:4],
            outcome_row(5, nicId='"NIC-000005"'),
            *THREE_EVENTS[5:8],
            outcome_row(9, errorMessage="Échec"),
            THREE_EVENTS[9],
        ]
    ),
    "a participation window a row": outcome_file(
        [
            outcome_row(1 + n % 10, participationStartDateTime=f"2026-12-01T14:{n:02d}:00Z")
            for n in range(70)
        ]
    ),
}


@pytest.mark.parametrize("name", OUTCOME_FILES)
def test_the_plain_way_cuts_an_outcome_file_as_the_csv_module_does(name: str) -> None:
    plain_segments, plain_scan = cut_outcomes(OUTCOME_FILES[name], plain=True)
    csv_segments, csv_scan = cut_outcomes(OUTCOME_FILES[name], plain=False)
    assert plain_scan.rows == csv_scan.rows
    assert set_aside_of(plain_scan) == set_aside_of(csv_scan)
    assert plain_segments == csv_segments


@pytest.mark.parametrize(
    "name",
    [
        "outcomes of three events",
        "crlf and a byte order mark",
        "an outcome of the expression's characters",
        "a CPMCS outcome that JSON escapes",
        "an errorMessage of 100 characters",
        "an eventId of 120 characters",
    ],
)
def test_plain_outcome_rows_are_checked_and_sent_by_the_plain_way_alone(name: str) -> None:
    def refused(_row: CsvRow, _lookups: Lookups) -> str:
        return "read by the csv module"

    def unbuilt(*_args: object) -> dict[str, Any]:
        raise AssertionError("built from dicts")

    flow = dataclasses.replace(OUTCOME_FLOW, fit_row=refused, segment_request=unbuilt)
    segments, scan = cut_with(
        flow, OUTCOME_MESSAGE, OUTCOME_LOOKUPS, OUTCOME_FILES[name], plain=True
    )

    assert (scan.rows, scan.set_aside.count) == (10, 0)
    assert [(first_line, rows) for _body, first_line, rows in segments] == [
        (2, 3),
        (5, 3),
        (8, 3),
        (11, 1),
    ]
    assert segments == cut_outcomes(OUTCOME_FILES[name], plain=False)[0]


def test_plain_outcome_rows_make_the_flows_own_body() -> None:
    segments, _scan = cut_outcomes(OUTCOME_FILES["outcomes of three events"], plain=True)

    rows = [line.decode().split(",") for line in THREE_EVENTS[3:6]]
    body = segments[1][0]
    assert body == segment_json(to_post_event_outcome(OUTCOME_MESSAGE, rows, SHIPPED)).encode()
    devices: list[dict[str, str]] = json.loads(body)["postOutcomeList"]
    assert [(d["eventExternalIdentifier"], d["outcome"]) for d in devices] == [
        ("EV-1", "D1ER"),
        ("EV-2", "D1CN"),
        ("EV-2", "D1SP"),
    ]
    assert devices[0]["errorMessage"] == ERROR_OUTCOME_MESSAGE
    assert ["errorMessage" in d for d in devices] == [True, False, False]


def test_bad_outcome_rows_after_plain_segments_are_set_aside_the_same_either_way() -> None:
    content = outcome_file(
        [
            *THREE_EVENTS[:6],
            outcome_row(7, outcome="MAYBE"),
            outcome_row(8, errorMessage="E" * 101),
            outcome_row(9, participationEndDateTime="2026-12-01T18:00:00+01:00"),
            outcome_row(10, eventId="V" * 121),
        ]
    )
    for plain in (True, False):
        segments, scan = cut_outcomes(content, plain=plain)
        count, named, lines = set_aside_of(scan)
        assert (count, scan.rows) == (2, 8)
        assert named == [
            "line 8 (recordId 7): outcome: lookup OUTL-BRT-DACS_DRMS_EventOutcome has no row "
            "for 'MAYBE'",
            "line 11 (recordId 10): eventId: 121 characters, CPMCS takes at most 120",
        ]
        assert (
            lines
            == outcome_row(7, outcome="MAYBE") + b"\n" + outcome_row(10, eventId="V" * 121) + b"\n"
        )
        outcomes = [
            o for body, _line, _rows in segments for o in json.loads(body)["postOutcomeList"]
        ]
        assert outcomes[6]["errorMessage"] == "E" * 97 + "..."
        assert outcomes[7]["participationEndDateTime"] == "2026-12-01T17:00:00Z"


def test_an_empty_participation_time_sets_its_row_aside() -> None:
    content = outcome_file(with_fields(2, participationStartDateTime=""))
    _segments, scan = cut_outcomes(content, plain=True)
    assert set_aside_of(scan)[1] == ["line 3 (recordId 2): participationStartDateTime: is empty"]


def test_an_outcome_the_lookup_no_longer_knows_stops_its_segment_either_way() -> None:
    # The lookups may change between a file's intake and the sending of its segments.
    rows_csv = b"\n".join(THREE_EVENTS[:3])
    without_success = dataclasses.replace(
        SHIPPED,
        tables={
            **SHIPPED.tables,
            "EventOutcome": dataclasses.replace(
                EVENT_OUTCOME, rows={k: v for k, v in EVENT_OUTCOME.rows.items() if k != "SUCCESS"}
            ),
        },
    )
    for flow in (
        OUTCOME_FLOW,
        dataclasses.replace(OUTCOME_FLOW, plain_row_pattern=None, plain_segment_request=None),
    ):
        with pytest.raises(LookupMiss, match="SUCCESS"):
            segment_body(flow, OUTCOME_MESSAGE, rows_csv, without_success)
