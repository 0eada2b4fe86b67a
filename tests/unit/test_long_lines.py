"""A CSV line with no end in sight: a header is refused once its bound has come, the rest
unread; a row's line is set aside with its first bytes and read past in constant memory,
whichever way the cutter reads it, and the rows after it go."""

from __future__ import annotations

import dataclasses
import io
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from derms_bridge.engine.file_jobs.csv_cutter import (
    HEADER_BYTES,
    LINE_BYTES,
    RowScan,
    UploadReader,
    cut_segments,
    read_header,
)
from derms_bridge.engine.uploads import FileRefused
from derms_bridge.flows.event_device_reservation import FLOW
from derms_bridge.lookups import Lookups
from tests.unit.test_file_cut import HEADER, file_of, row, set_aside_of

MIB = 1024 * 1024

#: What a line with no end is made of: a field of plain text, which the plain way's
#: expression would go on taking.
FILLER = b"7" * MIB

#: Far more than any buffer the cutter holds: held whole, as a line was, it shows.
LONG = 64 * MIB


class Streamed(io.RawIOBase):
    """An upload of `parts`, handed out as they are asked for, none of it copied: the
    bytes it has given are counted."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        super().__init__()
        self._parts = parts
        self._pending = memoryview(b"")
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = memoryview(next(self._parts, b""))
        target = memoryview(buffer).cast("B")
        size = min(len(target), len(self._pending))
        target[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.given += size
        return size


def long_line(size: int) -> Iterator[bytes]:
    for _ in range(size // len(FILLER)):
        yield FILLER


def uploaded(*parts: bytes | Iterator[bytes]) -> Streamed:
    def chained() -> Iterator[bytes]:
        for part in parts:
            if isinstance(part, bytes):
                yield part
            else:
                yield from part

    return Streamed(chained())


def test_a_header_with_no_line_end_is_refused_before_the_rest_is_read() -> None:
    upload = uploaded(b"recordId," + FILLER, long_line(LONG))

    with pytest.raises(FileRefused) as refused:
        read_header(UploadReader(io.BufferedReader(upload)))

    assert refused.value.errors == [
        {"field": "file", "message": f"the header, its first line, runs past {HEADER_BYTES} bytes"}
    ]
    assert upload.given <= 3 * MIB


def test_a_header_over_its_bound_with_a_line_end_is_refused_too() -> None:
    with pytest.raises(FileRefused, match="the header, its first line, runs past"):
        read_header(UploadReader(io.BytesIO(b"r" * (HEADER_BYTES + 1) + b"\n1,2\n")))


def test_a_header_at_its_bound_is_read() -> None:
    header = b"r" * (HEADER_BYTES - 1) + b"\r"
    assert read_header(UploadReader(io.BytesIO(header + b"\n"))) == ["r" * (HEADER_BYTES - 1)]


def cut(upload: Streamed, *, plain: bool) -> tuple[list[tuple[int, int]], RowScan]:
    """The segments cut (the line each starts on and its rows), and what the cut found."""
    flow = FLOW if plain else dataclasses.replace(FLOW, plain_row_pattern=None)
    lines = UploadReader(io.BufferedReader(upload))
    assert read_header(lines) == HEADER.decode().split(",")
    scan = RowScan()
    segments: list[tuple[int, int]] = []
    cut_segments(
        lines, flow, Lookups(), 3, scan, lambda _rows, first, rows: segments.append((first, rows))
    )
    return segments, scan


@pytest.mark.parametrize("plain", [True, False], ids=["plain way", "csv module"])
@pytest.mark.parametrize("end", [b"\n" + row(4) + b"\n", b""], ids=["rows after", "at the end"])
def test_a_row_with_no_line_end_is_set_aside_in_constant_memory(plain: bool, end: bytes) -> None:
    upload = uploaded(file_of([row(1), row(2)]), b"3,NIC-3,", long_line(LONG), end)
    tracemalloc.start()
    try:
        segments, scan = cut(upload, plain=plain)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    count, named, lines = set_aside_of(scan)
    assert (count, named) == (
        1,
        [f"line 4: a line longer than {LINE_BYTES} bytes (its first {LINE_BYTES} kept)"],
    )
    assert lines == (b"3,NIC-3," + FILLER)[:LINE_BYTES] + b"\n"
    assert scan.rows == (3 if end else 2)
    assert segments == ([(2, 3)] if end else [(2, 2)])
    assert upload.given == len(file_of([row(1), row(2)])) + 8 + LONG + len(end)
    # Held whole, the line alone would take LONG; the cutter holds a bound and a chunk.
    assert peak < 16 * MIB, f"{peak} bytes at most"


def test_long_rows_the_plain_way_takes_are_taken_as_they_come() -> None:
    """Rows of 100 KiB (a recordId of plain text may be as long as the csv module's field
    limit): a segment of 400 of them is 40 MiB. Held until the segment is whole, they would be
    matched again, and copied again, with every chunk read: the square of their length."""
    record_id = b"7" * (100 * 1024)
    count = 400
    row_bytes = record_id + b",NIC-1,ECOBEE,2026-12-01T14:00:00Z,2026-12-01T18:00:00Z\n"
    scan = RowScan()
    taken_at_each_read: list[int] = []

    def rows() -> Iterator[bytes]:
        for _ in range(count):
            taken_at_each_read.append(scan.rows)
            yield row_bytes

    lines = UploadReader(io.BufferedReader(uploaded(HEADER + b"\n", rows())))
    assert read_header(lines) is not None
    segments: list[int] = []
    cut_segments(lines, FLOW, Lookups(), count, scan, lambda _csv, _line, n: segments.append(n))

    assert (scan.rows, scan.set_aside.count, segments) == (count, 0, [count])
    # Half way through the file, at most a few chunks' rows wait to be taken.
    assert taken_at_each_read[count // 2] >= count // 2 - 4 * MIB // len(row_bytes)
