"""The intake's cutter: a CSV upload read as it streams in, its header and every row
checked, and its rows cut into segments of `segments.size` rows, kept as CSV lines; and a
segment's body, built from those lines when it is sent.

Blocks of plain rows are checked by one match of the flow's expression and kept as they
came; a line the expression does not take is read by the csv module, checked on its own
(the flow's `fit_row`, which normalises what it can) and kept as the flow fitted it, or set
aside with its line and why, as it came; then the plain way goes on. Both ways give the
same segments and set aside the same rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel

from derms_bridge.engine.uploads import CHUNK_BYTES, FileRefused, drain
from derms_bridge.flows.csv_rows import utc_z
from derms_bridge.flows.ports import CsvRow, FileFlow, segment_json
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.ops import SetAsideRow
from derms_bridge.store.file_job_records import SET_ASIDE_NAMED, SetAside


class SetAsideRows:
    """The rows of a file that cannot go, as the cutter finds them: how many, the first
    SET_ASIDE_NAMED named, and all of them as they came, compressed as they come, so
    that memory grows with their compressed size only."""

    def __init__(self) -> None:
        self.count = 0
        self.named: list[SetAsideRow] = []
        self._compressor = zlib.compressobj(6)
        self._compressed: list[bytes] = []

    def add(self, line: int, record_id: str | None, reason: str, lines: list[bytes]) -> None:
        """A row set aside: the `lines` it took, as they came, each to end in a line feed."""
        self.count += 1
        if len(self.named) < SET_ASIDE_NAMED:
            self.named.append(SetAsideRow(line, record_id, reason))
        as_came = b"".join(taken.removesuffix(b"\r") + b"\n" for taken in lines)
        self._compressed.append(self._compressor.compress(as_came))

    def kept(self) -> SetAside:
        """What the job keeps of them; the compression ends: called once, at the file's end."""
        if not self.count:
            return SetAside(0, [], None)
        return SetAside(
            self.count, self.named, b"".join([*self._compressed, self._compressor.flush()])
        )


@dataclass
class RowScan:
    """What reading the file found besides its segments: the rows kept to send, the lines
    read after the header, and the rows set aside."""

    rows: int = 0
    lines: int = 0
    set_aside: SetAsideRows = field(default_factory=SetAsideRows)


#: How many distinct date-times the plain way learns before it leaves a file to the csv
#: module: each one learned compiles the expression of a block again.
_PLAIN_TIMES = 64


#: The longest first line, the header, taken: a real header of these files is a few hundred
#: bytes. A longer one is refused once this much of it has come, the rest left unread.
HEADER_BYTES = 64 * 1024

#: The longest line of a row taken: more than any row the plain way's expression takes
#: (a recordId as long as the csv module's field limit, 128 KiB). A longer line is set
#: aside with its first LINE_BYTES bytes, the rest read past without being kept.
LINE_BYTES = 256 * 1024


class LineTooLong(Exception):
    """The next line runs past its bound: it is still next in the upload."""


class UploadReader:
    """The upload, read a chunk at a time: what has been read and not yet taken is
    `data[pos:]`, never much more than a line's bound and a chunk. The file's last line
    gets the line feed it may lack."""

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

    def line(self, bound: int = LINE_BYTES) -> bytes | None:
        """The next line without its line feed; None at the file's end. LineTooLong once
        more than `bound` bytes of it have come: each chunk is searched once, and no more
        than the bound and a chunk is held."""
        scanned = 0
        while (end := self.data.find(b"\n", self.pos + scanned)) < 0:
            scanned = len(self.data) - self.pos
            if scanned > bound:
                raise LineTooLong
            if not self.more():
                return None
        if end - self.pos > bound:
            raise LineTooLong
        line = self.data[self.pos : end]
        self.pos = end + 1
        return line

    def skip_line(self) -> bytes:
        """Read past the next line, dropping it as it comes: its first LINE_BYTES bytes."""
        head = self.data[self.pos : self.pos + LINE_BYTES]
        while (end := self.data.find(b"\n", self.pos)) < 0:
            self.data, self.pos = b"", 0
            if not self.more():
                return head
        self.pos = end + 1
        return head

    def drain(self) -> None:
        """Read to the file's end, dropping what is read."""
        self.data, self.pos = b"", 0
        drain(self._upload)
        self.ended = True


#: The bytes of plain rows kept as lines: printable ASCII but the quote and the backslash
#: (the comma among them, as it joins fields), and the line feed.
_PLAIN_LINE_BYTES = bytes(set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}) + b"\n"


#: The bytes of a segment of plain rows: a block the plain way cut keeps the carriage
#: returns of its line ends, and only those.
_PLAIN_SEGMENT_BYTES = _PLAIN_LINE_BYTES + b"\r"


def read_header(lines: UploadReader) -> list[str] | None:
    """The file's first line as CSV fields; None for an empty file."""
    try:
        first = lines.line(HEADER_BYTES)
        return None if first is None else next(csv.reader([first.decode()]), None)
    except LineTooLong:
        message = f"the header, its first line, runs past {HEADER_BYTES} bytes"
        raise FileRefused([{"field": "file", "message": message}]) from None
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


class _Segment:
    """The rows of the segment being cut, as pieces of CSV lines, emitted once it holds
    `size` rows (and at the file's end)."""

    def __init__(self, size: int, emit: Callable[[bytes, int, int], None]) -> None:
        self.size = size
        self._emit = emit
        self._pieces: list[bytes] = []
        self.rows = 0
        self._first_line = 0

    def add(self, piece: bytes, first_line: int, rows: int) -> None:
        if not self.rows:
            self._first_line = first_line
        self._pieces.append(piece)
        self.rows += rows
        if self.rows >= self.size:
            self.flush()

    def add_lines(self, data: bytes, start: int, end: int, rows: int, first_line: int) -> None:
        """The `rows` lines of `data[start:end]`, the last one's line feed included: cut
        where the segment fills (after a row set aside, a block of plain rows starts part
        way into a segment)."""
        while rows > self.size - self.rows:
            room = self.size - self.rows
            split = start
            for _ in range(room):
                split = data.index(b"\n", split) + 1
            self.add(data[start : split - 1], first_line, room)
            start, rows, first_line = split, rows - room, first_line + room
        self.add(data[start : end - 1], first_line, rows)

    def flush(self) -> None:
        if self.rows:
            # A single piece, the plain way's usual block, is emitted as it is, uncopied.
            self._emit(b"\n".join(self._pieces), self._first_line, self.rows)
            self._pieces, self.rows = [], 0


def cut_segments(
    upload: UploadReader,
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: RowScan,
    emit: Callable[[bytes, int, int], None],
) -> None:
    """Runs in a thread: check every row, and emit segments of `size` rows, as CSV lines.
    Blocks of plain rows are checked by the flow's expression, and kept as they came; a
    line the expression does not take is read as one row by the csv module, and kept as the
    flow fitted it or set aside; then the plain way goes on."""
    segment = _Segment(size, emit)
    plain = None if flow.plain_row_pattern is None else _PlainBlocks(flow, lookups, size)
    row_by_row = _RowByRow(upload, flow, lookups)
    while True:
        if plain is not None:
            plain.take(upload, segment, scan)
        if not row_by_row.take(segment, scan):
            break
    segment.flush()


class _PlainBlocks:
    """The plain way: rows matched by the flow's expression, a block of up to a segment's
    rows at a time."""

    def __init__(self, flow: FileFlow[Any], lookups: Lookups, size: int) -> None:
        assert flow.plain_row_pattern is not None
        self._row_pattern = flow.plain_row_pattern
        self._flow = flow
        self._lookups = lookups
        self._size = size
        self._times: list[bytes] = []
        self._block = self._compiled()

    def _compiled(self) -> re.Pattern[bytes]:
        times = self._times
        known = b"|".join(map(re.escape, times)) if times else b"(?!)"
        row = rb"%s\r?\n" % self._row_pattern(b"(?:" + known + b")", self._lookups)
        # A full block's last row is a group of its own: that it took part tells that the
        # block has `size` rows, where counting its lines would cost a third as much as the
        # match.
        return re.compile(rb"(?:%s){0,%d}(%s)?" % (row, self._size - 1, row))

    def take(self, upload: UploadReader, segment: _Segment, scan: RowScan) -> None:
        """Plain rows, a block at a time, until the file's end or a line the expression
        does not take, which is then next in `upload`."""
        size = self._size
        while True:
            data, pos = upload.data, upload.pos
            match = self._block.match(data, pos)
            end = pos if match is None else match.end()
            full = match is not None and match.start(1) >= 0
            rows = size if full else data.count(b"\n", pos, end)
            stop = not full
            if not full:
                if end == len(data) or data.find(b"\n", end) < 0:
                    # The next line is not all read yet: read on, unless it runs past any
                    # line this way takes (the csv module's way sets it aside).
                    if len(data) - end <= LINE_BYTES:
                        if rows and end - pos > LINE_BYTES:
                            # Rows of many bytes are kept before reading on: matched again
                            # with what is read, long rows would cost the square of their
                            # length.
                            self._keep(upload, segment, scan, end, rows)
                            rows = 0
                        if upload.more():
                            continue
                elif len(self._times) < _PLAIN_TIMES and _learned(
                    data[end : data.find(b"\n", end)], self._flow, self._times
                ):
                    self._block = self._compiled()
                    continue
            if rows:
                self._keep(upload, segment, scan, end, rows)
            if stop:
                return

    @staticmethod
    def _keep(upload: UploadReader, segment: _Segment, scan: RowScan, end: int, rows: int) -> None:
        """The `rows` matched from the upload's position to `end`, taken."""
        # Kept with the carriage returns of their line ends, if any (the expression's fields
        # take none): segment_body takes them out in the pass it makes anyway, where taking
        # them out here would copy the block again.
        segment.add_lines(upload.data, upload.pos, end, rows, 2 + scan.lines)
        scan.rows += rows
        scan.lines += rows
        upload.pos = end


def _learned(line: bytes, flow: FileFlow[Any], times: list[bytes]) -> bool:
    """Whether the row holds date-times of plain text in CPMCS's form (UTC, with Z) not
    seen yet: added to `times`."""
    fields = line.removesuffix(b"\r").split(b",")
    if len(fields) != len(flow.header):
        return False
    found = False
    for column in flow.plain_time_columns:
        value = fields[column]
        if not value or value in times or value.translate(None, _PLAIN_LINE_BYTES):
            continue
        text = value.decode("ascii")
        try:
            in_form = utc_z(text) == text
        except ValueError:
            continue
        if in_form:
            times.append(value)
            found = True
    return found


class _RowByRow:
    """The csv module's way: the next row read (over several lines, if a quoted field holds
    line ends) and fitted by the flow, then kept in the segment, or set aside as it came
    with its line and why. The reader takes lines from the upload only as a row needs
    them, so that the plain way goes on from the line after."""

    def __init__(self, upload: UploadReader, flow: FileFlow[Any], lookups: Lookups) -> None:
        self._upload = upload
        self._flow = flow
        self._lookups = lookups
        self._width = len(flow.header)
        self._taken: list[bytes] = []
        self._reader = csv.reader(self._lines())
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\n")

    def _lines(self) -> Iterator[str]:
        while True:
            try:
                line = self._upload.line()
            except LineTooLong:
                self._taken.append(self._upload.skip_line())
                raise
            if line is None:
                return
            self._taken.append(line)
            yield line.decode() + "\n"

    def take(self, segment: _Segment, scan: RowScan) -> bool:
        """The next row; False at the file's end."""
        taken = self._taken
        taken.clear()
        line = 2 + scan.lines
        try:
            row = next(self._reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            # The reader (and its lines) stop at an error: the next row starts afresh.
            self._reader = csv.reader(self._lines())
            scan.lines += len(taken)
            scan.set_aside.add(line, None, f"not a CSV row: {exc}", taken)
            return True
        except LineTooLong:
            self._reader = csv.reader(self._lines())
            scan.lines += len(taken)
            reason = f"a line longer than {LINE_BYTES} bytes (its first {LINE_BYTES} kept)"
            scan.set_aside.add(line, None, reason, taken)
            return True
        scan.lines += len(taken)
        if row is None:
            return False
        if not row:
            return True
        fitted = (
            f"has {len(row)} fields, the header has {self._width}"
            if len(row) != self._width
            else self._flow.fit_row(row, self._lookups)
        )
        if isinstance(fitted, str):
            scan.set_aside.add(line, row[0] or None, fitted, taken)
            return True
        segment.add(self._csv_line(fitted), line, 1)
        scan.rows += 1
        return True

    def _csv_line(self, row: CsvRow) -> bytes:
        joined = ",".join(row)
        if joined.count(",") == self._width - 1 and not _QUOTED.search(joined):
            # What the csv module would write: no field needs quotes.
            return joined.encode()
        self._text.seek(0)
        self._text.truncate()
        self._writer.writerow(row)
        return self._text.getvalue().removesuffix("\n").encode()


#: A character that makes the csv module quote its field (the comma is counted apart).
_QUOTED = re.compile(r'["\r\n]')


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
