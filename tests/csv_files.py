"""The CSV files DERMS sends with flows 7 and 8, written for tests and benchmarks.

Rows are made one at a time and written straight to disk, so that a benchmark can write a
file of millions of rows in constant memory; ``file_chunks`` then reads one back in pieces for
a streaming upload. Any row can be corrupted in a chosen way, to see how the hub refuses bad
input.

Row numbers count the data rows from 1 (the header is not one) and are each row's recordId.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

RESERVATION_HEADER = (
    "recordId",
    "nicId",
    "headEndSystemId",
    "reservationStartDateTime",
    "reservationEndDateTime",
)
OUTCOME_HEADER = (
    "recordId",
    "eventId",
    "nicId",
    "headEndSystemId",
    "outcome",
    "participationStartDateTime",
    "participationEndDateTime",
    "errorMessage",
)

#: The outcomes DERMS writes (the EventOutcome lookup's DERMS side), in the order rows cycle.
OUTCOMES = ("SUCCESS", "OVERRIDE", "NON_RESPONSIVE", "ERROR", "CANCELLED")
ERROR_OUTCOME_MESSAGE = "Device did not acknowledge the control command"

HEAD_END_SYSTEM = "ECOBEE"
EVENT_ID = "EV-1"
EVENT_START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
EVENT_END = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)

# CPMCS's field limits (CONTRACT.md, "CPMCS field limits"): a corruption breaks one by a character.
NIC_ID_LIMIT = 100
HEAD_END_SYSTEM_LIMIT = 50
ERROR_MESSAGE_LIMIT = 100

#: Month 13: no parser takes it, however lenient.
BAD_TIMESTAMP = "2026-13-01T14:00:00Z"
UNKNOWN_OUTCOME = "MAYBE"


class Corruption(StrEnum):
    """What is wrong with a corrupted row."""

    #: The start date-time (reservation or participation) is not a date.
    BAD_TIMESTAMP = "bad-timestamp"
    #: nicId is one character over CPMCS's limit.
    LONG_NIC_ID = "long-nic-id"
    #: headEndSystemId is one character over CPMCS's limit.
    LONG_HEAD_END_SYSTEM = "long-head-end-system"
    #: Outcome files only: an ERROR row whose errorMessage is one character over the limit.
    LONG_ERROR_MESSAGE = "long-error-message"
    #: Outcome files only: an outcome the EventOutcome lookup does not know.
    UNKNOWN_OUTCOME = "unknown-outcome"
    #: The nicId field is left out, so the row has one field fewer than the header.
    MISSING_COLUMN = "missing-column"


_OUTCOME_ONLY = frozenset({Corruption.LONG_ERROR_MESSAGE, Corruption.UNKNOWN_OUTCOME})


def utc_text(moment: datetime) -> str:
    """``moment`` as DERMS writes it in these files: UTC to the second, with ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in a UTC file; give it a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nic_id(row_number: int) -> str:
    """The nicId of row ``row_number``; unique per row."""
    return f"NIC-{row_number:06d}"


def outcome_for(row_number: int) -> str:
    """The outcome of row ``row_number`` of an outcome file: OUTCOMES in turn from row 1."""
    return OUTCOMES[(row_number - 1) % len(OUTCOMES)]


def event_id_for(row_number: int, row_count: int, event_ids: Sequence[str]) -> str:
    """The event of row ``row_number`` of an outcome file.

    The rows are split into as many runs as there are events, in order and as even as they
    can be, so that a file of several events has segments that straddle two.
    """
    return event_ids[(row_number - 1) * len(event_ids) // row_count]


def reservation_rows(
    row_count: int,
    *,
    head_end_system: str = HEAD_END_SYSTEM,
    start: datetime = EVENT_START,
    end: datetime = EVENT_END,
    corrupt: Mapping[int, Corruption] | None = None,
) -> Iterator[list[str]]:
    """The data rows of a reservation file, one at a time, in RESERVATION_HEADER's order."""
    corruptions = _checked(corrupt, row_count, outcome_file=False)
    start_text, end_text = utc_text(start), utc_text(end)
    for row_number in range(1, row_count + 1):
        row = {
            "recordId": str(row_number),
            "nicId": nic_id(row_number),
            "headEndSystemId": head_end_system,
            "reservationStartDateTime": start_text,
            "reservationEndDateTime": end_text,
        }
        corruption = corruptions.get(row_number)
        if corruption is not None:
            _corrupt(row, corruption, "reservationStartDateTime")
        yield [row[column] for column in RESERVATION_HEADER if column in row]


def outcome_rows(
    row_count: int,
    *,
    event_ids: Sequence[str] = (EVENT_ID,),
    head_end_system: str = HEAD_END_SYSTEM,
    start: datetime = EVENT_START,
    end: datetime = EVENT_END,
    corrupt: Mapping[int, Corruption] | None = None,
) -> Iterator[list[str]]:
    """The data rows of an outcome file, one at a time, in OUTCOME_HEADER's order.

    Outcomes cycle through OUTCOMES; only ERROR rows have an errorMessage. Events follow
    ``event_id_for``.
    """
    if not event_ids:
        raise ValueError("an outcome file needs at least one event id")
    corruptions = _checked(corrupt, row_count, outcome_file=True)
    start_text, end_text = utc_text(start), utc_text(end)
    for row_number in range(1, row_count + 1):
        outcome = outcome_for(row_number)
        row = {
            "recordId": str(row_number),
            "eventId": event_id_for(row_number, row_count, event_ids),
            "nicId": nic_id(row_number),
            "headEndSystemId": head_end_system,
            "outcome": outcome,
            "participationStartDateTime": start_text,
            "participationEndDateTime": end_text,
            "errorMessage": ERROR_OUTCOME_MESSAGE if outcome == "ERROR" else "",
        }
        corruption = corruptions.get(row_number)
        if corruption is not None:
            _corrupt(row, corruption, "participationStartDateTime")
        yield [row[column] for column in OUTCOME_HEADER if column in row]


def write_reservation_csv(
    path: Path,
    row_count: int,
    *,
    head_end_system: str = HEAD_END_SYSTEM,
    start: datetime = EVENT_START,
    end: datetime = EVENT_END,
    corrupt: Mapping[int, Corruption] | None = None,
) -> Path:
    """Writes a reservation file of ``row_count`` data rows to ``path``; returns ``path``."""
    rows = reservation_rows(
        row_count, head_end_system=head_end_system, start=start, end=end, corrupt=corrupt
    )
    return _write(path, RESERVATION_HEADER, rows)


def write_outcome_csv(
    path: Path,
    row_count: int,
    *,
    event_ids: Sequence[str] = (EVENT_ID,),
    head_end_system: str = HEAD_END_SYSTEM,
    start: datetime = EVENT_START,
    end: datetime = EVENT_END,
    corrupt: Mapping[int, Corruption] | None = None,
) -> Path:
    """Writes an outcome file of ``row_count`` data rows to ``path``; returns ``path``."""
    rows = outcome_rows(
        row_count,
        event_ids=event_ids,
        head_end_system=head_end_system,
        start=start,
        end=end,
        corrupt=corrupt,
    )
    return _write(path, OUTCOME_HEADER, rows)


def file_chunks(path: Path, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The bytes of the file at ``path`` in chunks of ``chunk_size`` (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    with path.open("rb") as file:
        while chunk := file.read(chunk_size):
            yield chunk


def _write(path: Path, header: Sequence[str], rows: Iterable[list[str]]) -> Path:
    # newline="" leaves line endings to the csv module, which ends every row with CRLF as
    # RFC 4180 has it.
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _checked(
    corrupt: Mapping[int, Corruption] | None, row_count: int, *, outcome_file: bool
) -> Mapping[int, Corruption]:
    if row_count < 0:
        raise ValueError(f"row_count must not be negative, not {row_count}")
    corruptions = corrupt or {}
    for row_number, corruption in corruptions.items():
        if not 1 <= row_number <= row_count:
            raise ValueError(f"row {row_number} to corrupt is not among rows 1 to {row_count}")
        if corruption in _OUTCOME_ONLY and not outcome_file:
            raise ValueError(f"{corruption} applies to outcome files only")
    return corruptions


def _corrupt(row: dict[str, str], corruption: Corruption, start_column: str) -> None:
    match corruption:
        case Corruption.BAD_TIMESTAMP:
            row[start_column] = BAD_TIMESTAMP
        case Corruption.LONG_NIC_ID:
            # Still starts with the row's own nicId, so that it stays unique.
            row["nicId"] = row["nicId"].ljust(NIC_ID_LIMIT + 1, "X")
        case Corruption.LONG_HEAD_END_SYSTEM:
            row["headEndSystemId"] = row["headEndSystemId"].ljust(HEAD_END_SYSTEM_LIMIT + 1, "X")
        case Corruption.LONG_ERROR_MESSAGE:
            row["outcome"] = "ERROR"
            row["errorMessage"] = ERROR_OUTCOME_MESSAGE.ljust(ERROR_MESSAGE_LIMIT + 1, ".")
        case Corruption.UNKNOWN_OUTCOME:
            row["outcome"] = UNKNOWN_OUTCOME
        case Corruption.MISSING_COLUMN:
            del row["nicId"]
