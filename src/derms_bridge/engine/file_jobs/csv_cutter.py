"""The intake's cutter: a CSV upload read as it streams in, its header and every row
checked, and its rows cut into segments of `segments.size` rows, kept as CSV lines; and a
segment's body, built from those lines when it is sent.

Blocks of plain rows are checked by one match of the flow's expression and kept as they
came; from the first block that is not, the csv module reads the rest of the file and
each row is checked on its own. Both ways give the same segments and the same refusals.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel

from derms_bridge.engine.uploads import CHUNK_BYTES, FileRefused, drain
from derms_bridge.flows.csv_rows import utc_problem
from derms_bridge.flows.ports import CsvRow, FileFlow, segment_json
from derms_bridge.lookups import Lookups

#: How many bad rows a refused file's FAILURE acknowledgement names.
BAD_ROWS_NAMED = 10


@dataclass
class RowScan:
    """What reading the file found besides its segments."""

    rows: int = 0
    bad_rows: list[str] = field(default_factory=list)


#: How many distinct date-times the plain way learns before it leaves a file to the csv
#: module: each one learned compiles the expression of a block again.
_PLAIN_TIMES = 64


class UploadReader:
    """The upload, read a chunk at a time: what has been read and not yet taken is
    `data[pos:]`. The file's last line gets the line feed it may lack."""

    def __init__(self, upload: IO[bytes]) -> None:
        self._upload = upload
        self.data = b""
        self.pos = 0
        self.ended = False
        self._first = True

    def more(self) -> bool:
        """Read another chunk; False at the file's end."""
        if self.ended:
            return False
        chunk = self._upload.read(CHUNK_BYTES)
        if self._first:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
            self._first = False
        if not chunk:
            self.ended = True
            if self.pos == len(self.data) or self.data.endswith(b"\n"):
                return False
            chunk = b"\n"
        self.data = self.data[self.pos :] + chunk
        self.pos = 0
        return True

    def line(self) -> bytes | None:
        """The next line without its line feed; None at the file's end."""
        while (end := self.data.find(b"\n", self.pos)) < 0:
            if not self.more():
                return None
        line = self.data[self.pos : end]
        self.pos = end + 1
        return line

    def drain(self) -> None:
        """Read to the file's end, dropping what is read."""
        self.data, self.pos = b"", 0
        drain(self._upload)
        self.ended = True

    def rest(self) -> IO[bytes]:
        """The file from `pos` on, for the csv module to read."""
        head = self.data[self.pos :]
        self.data, self.pos = b"", 0
        return io.BufferedReader(_Joined(head, self._upload))


class _Joined(io.RawIOBase):
    """Bytes already read, then the rest of a file."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


#: The bytes of plain rows kept as lines: printable ASCII but the quote and the backslash
#: (the comma among them, as it joins fields), and the line feed.
_PLAIN_LINE_BYTES = bytes(set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}) + b"\n"


#: The bytes of a segment of plain rows: a block the plain way cut keeps the carriage
#: returns of its line ends, and only those.
_PLAIN_SEGMENT_BYTES = _PLAIN_LINE_BYTES + b"\r"


def read_header(lines: UploadReader) -> list[str] | None:
    """The file's first line as CSV fields; None for an empty file."""
    try:
        first = lines.line()
        return None if first is None else next(csv.reader([first.decode()]), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FileRefused([{"field": "file", "message": f"not a CSV file: {exc}"}]) from None


def check_header(flow: FileFlow[Any], header: list[str] | None) -> None:
    if header is None or tuple(h.strip() for h in header) != flow.header:
        raise FileRefused(
            [
                {
                    "field": "file",
                    "message": f"the header must be {','.join(flow.header)}"
                    + (f", not {','.join(header)}" if header else "; the file is empty"),
                }
            ]
        )


def cut_segments(
    upload: UploadReader,
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: RowScan,
    emit: Callable[[bytes, int, int], None],
) -> None:
    """Runs in a thread: check every row, and emit segments of `size` rows, as CSV lines.
    Blocks of plain rows are checked by the flow's expression, and kept as they came; from
    the first block that is not, the csv module reads the rest of the file and each row is
    checked on its own."""
    row_pattern = flow.plain_row_pattern
    if row_pattern is None or not _cut_plain(upload, row_pattern, flow, lookups, size, scan, emit):
        _cut_rows(upload.rest(), 1 + scan.rows, flow, lookups, size, scan, emit)


def _cut_plain(
    upload: UploadReader,
    row_pattern: Callable[[bytes, Lookups], bytes],
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: RowScan,
    emit: Callable[[bytes, int, int], None],
) -> bool:
    """The plain way, a block of `size` rows matched at a time; False at the first block it
    cannot take whole, which the csv module then reads from its first line."""
    times: list[bytes] = []

    def blocks() -> re.Pattern[bytes]:
        known = b"|".join(map(re.escape, times)) if times else b"(?!)"
        row = rb"%s\r?\n" % row_pattern(b"(?:" + known + b")", lookups)
        # A full block's last row is a group of its own: that it took part tells that the
        # block has `size` rows, where counting its lines would cost a third as much as
        # the match.
        return re.compile(rb"(?:%s){0,%d}(%s)?" % (row, size - 1, row))

    pattern = blocks()
    while True:
        data, pos = upload.data, upload.pos
        match = pattern.match(data, pos)
        end = pos if match is None else match.end()
        full = match is not None and match.start(1) >= 0
        rows = size if full else data.count(b"\n", pos, end)
        if rows < size:
            if end == len(data):
                # The block runs to the end of what has been read: read on, if there is more.
                if upload.more():
                    continue
                if not rows:
                    return True
            elif data.find(b"\n", end) < 0:
                upload.more()
                continue
            elif len(times) < _PLAIN_TIMES and _learned(
                data[end : data.find(b"\n", end)], flow, times
            ):
                pattern = blocks()
                continue
            else:
                return False
        # Kept with the carriage returns of their line ends, if any (the expression's fields
        # take none): segment_body takes them out in the pass it makes anyway, where
        # taking them out here would copy the block again.
        emit(data[pos : end - 1], 2 + scan.rows, rows)
        scan.rows += rows
        upload.pos = end


def _learned(line: bytes, flow: FileFlow[Any], times: list[bytes]) -> bool:
    """Whether the row holds UTC date-times of plain text not seen yet: added to `times`."""
    fields = line.removesuffix(b"\r").split(b",")
    if len(fields) != len(flow.header):
        return False
    found = False
    for column in flow.plain_time_columns:
        value = fields[column]
        if value in times or value.translate(None, _PLAIN_LINE_BYTES):
            continue
        if utc_problem(flow.header[column], value.decode("ascii")) is None:
            times.append(value)
            found = True
    return found


def _cut_rows(
    rest: IO[bytes],
    lines_before: int,
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: RowScan,
    emit: Callable[[bytes, int, int], None],
) -> None:
    """The rest of the file read by the csv module, and checked a row at a time."""
    reader = csv.reader(io.TextIOWrapper(rest, encoding="utf-8", newline=""))
    try:
        rows: list[CsvRow] = []
        first_line = 0
        width = len(flow.header)

        def cut() -> None:
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            emit(text.getvalue().removesuffix("\n").encode(), first_line, len(rows))

        for row in reader:
            line = lines_before + reader.line_num
            if not row:
                continue
            problem = (
                f"has {len(row)} fields, the header has {width}"
                if len(row) != width
                else flow.row_problem(row, lookups)
            )
            if problem is not None:
                scan.bad_rows.append(f"line {line}: {problem}")
                if len(scan.bad_rows) >= BAD_ROWS_NAMED:
                    break
                continue
            scan.rows += 1
            if scan.bad_rows:
                continue
            if not rows:
                first_line = line
            rows.append(row)
            if len(rows) == size:
                cut()
                rows = []
        if rows and not scan.bad_rows:
            cut()
    except (csv.Error, UnicodeDecodeError) as exc:
        scan.bad_rows.append(
            f"line {lines_before + reader.line_num}: the file cannot be read as CSV: {exc}"
        )


def segment_body(
    flow: FileFlow[Any], message: BaseModel, rows_csv: bytes, lookups: Lookups
) -> bytes:
    """A segment's body, from its rows as the intake kept them (checked already). Rows of
    plain text are their fields as they stand, whichever way the intake read them: the csv
    module writes a field as it came unless it needs quotes."""
    if flow.plain_segment_request is not None and not rows_csv.translate(
        None, _PLAIN_SEGMENT_BYTES
    ):
        fields = rows_csv.translate(None, b"\r").replace(b"\n", b",").split(b",")
        return flow.plain_segment_request(message, fields, lookups)
    rows = list(csv.reader(io.StringIO(rows_csv.decode(), newline="")))
    return segment_json(flow.segment_request(message, rows, lookups)).encode()
