"""What the file jobs' store takes and gives: a file received and its segments, its
rows set aside, and the jobs and segments a worker claims and the results it records."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from derms_bridge.schemas.ops import Activity, SetAsideRow
from derms_bridge.tracing import TraceRef

#: How much of a file's compressed segments the SQLite spool keeps in memory, before disk.
SEGMENT_SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class NewFile:
    """A received file's instance, written with what is kept of the file."""

    instance_id: str
    flow: str
    caller: str | None
    #: The trigger's message, as the instance's payload and the job's.
    message: Any
    keys: Sequence[tuple[str, str]]
    resubmit_of: str | None
    #: Where the file's acknowledgements go: the DERMS connection that sent it.
    derms_connection: str
    #: Where the file's trace hangs: its segments and acknowledgement join it.
    trace: TraceRef | None = None


@dataclass(frozen=True)
class NewSegment:
    seq: int
    first_line: int
    row_count: int
    #: The segment's rows as CSV lines, zlib-compressed.
    rows_zlib: bytes


#: How many of a file's rows set aside are named (line, recordId, why) in the job, for its
#: acknowledgement and the ops API; all of them are kept, as they came, for the download.
SET_ASIDE_NAMED = 1000


@dataclass(frozen=True)
class SetAside:
    """The rows of a file that could not go: how many, the first SET_ASIDE_NAMED named, and
    all of them as they came (CSV lines, zlib-compressed; None when there are none)."""

    count: int
    named: list[SetAsideRow]
    lines_zlib: bytes | None

    def columns(self) -> dict[str, Any]:
        """As the job's columns keep them."""
        return {
            "rows_set_aside": self.count,
            "set_aside": [vars(row) for row in self.named] if self.count else None,
            "set_aside_zlib": self.lines_zlib,
        }


#: A spooled segment's seq, first line, rows and compressed size, before its bytes.
_SPOOLED_HEAD = struct.Struct("<QQQQ")


def spool_segment(spool: IO[bytes], segment: NewSegment) -> None:
    size = len(segment.rows_zlib)
    spool.write(_SPOOLED_HEAD.pack(segment.seq, segment.first_line, segment.row_count, size))
    spool.write(segment.rows_zlib)


async def spooled_segments(spool: IO[bytes]) -> AsyncIterator[NewSegment]:
    spool.seek(0)
    while head := spool.read(_SPOOLED_HEAD.size):
        seq, first_line, row_count, size = _SPOOLED_HEAD.unpack(head)
        yield NewSegment(seq, first_line, row_count, spool.read(size))


@dataclass(frozen=True)
class ClaimedJob:
    instance_id: str
    flow: str
    message: Any
    state: str
    outcome: str | None
    failure: str | None
    run: int
    total_rows: int
    total_segments: int
    derms_connection: str | None
    #: The MsgAck the run sent, as it went (acking_again).
    ack: Any | None
    #: Of its segments, those sent again when CPMCS may have had them already.
    segments_sent_again: int
    rows_set_aside: int
    #: Where its instance's trace hangs.
    trace: TraceRef | None = None


@dataclass(frozen=True)
class ClaimedSegment:
    id: int
    instance_id: str
    flow: str
    message: Any
    seq: int
    first_line: int
    row_count: int
    #: The segment's rows as CSV lines, zlib-compressed.
    rows_zlib: bytes
    #: Claimed after another claim's lease ran out while it was sending: CPMCS may have it.
    taken_over: bool
    #: Where its instance's trace hangs.
    trace: TraceRef | None = None


@dataclass(frozen=True)
class SegmentResult:
    """A sent segment's result, to be recorded: error None when CPMCS took it."""

    segment: ClaimedSegment
    error: str | None
    failure: str | None
    activities: Sequence[Activity]
    #: Tried again after a try whose answer was lost: CPMCS may have had it already.
    sent_again: bool
