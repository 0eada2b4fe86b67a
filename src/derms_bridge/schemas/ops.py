"""What the operations API shows of instances and their activity, and the records it is
made of: a business identifier, an activity, a file's progress and the rows it set aside,
what selects instances."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: resolved: failed, then resubmitted by a run that succeeded (or was skipped); rejected:
#: refused before its flow ran (a malformed body, a schema error, a limit), kept as it came.
InstanceStatus = Literal["in_progress", "succeeded", "failed", "skipped", "resolved", "rejected"]
INSTANCE_STATUSES: tuple[InstanceStatus, ...] = (
    "failed",
    "rejected",
    "in_progress",
    "succeeded",
    "resolved",
    "skipped",
)


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


@dataclass(frozen=True)
class BusinessKey:
    kind: str
    value: str


@dataclass(frozen=True)
class Activity:
    """One call a run made (or an email it could not send), when it ended and how."""

    target: str
    operation: str
    method: str | None
    path: str | None
    http_status: int | None
    duration_ms: float
    error: str | None
    at: datetime


@dataclass(frozen=True)
class KeptActivity(Activity):
    """An activity as its instance keeps it: `seq` numbers it among the instance's."""

    seq: int


@dataclass(frozen=True)
class SetAsideRow:
    """A row of a file that could not go to CPMCS (flows 7, 8): the line it stood on, its
    recordId if it could be read, and why."""

    line: int
    record_id: str | None
    reason: str

    def __str__(self) -> str:
        record = f" (recordId {self.record_id})" if self.record_id else ""
        return f"line {self.line}{record}: {self.reason}"


@dataclass(frozen=True)
class FileProgress:
    """A file flow's run: its segments done, failed and left, the rows set aside, and what
    went wrong."""

    state: str
    run: int
    outcome: str | None
    failure: str | None
    #: The rows that could not go; `set_aside` names the first 1,000 of them, and the
    #: ops API's set-aside.csv holds them all.
    rows_set_aside: int
    set_aside: list[SetAsideRow]
    total_rows: int
    segments: dict[str, int]
    rows_sent: int
    #: Segments sent to CPMCS again when it may have had them already (delivery is at
    #: least once per segment): claimed again after a lease ran out while sending, or
    #: tried again after a try whose answer was lost.
    segments_sent_again: int
    segment_errors: list[str]
    ack_error: str | None
    #: The DERMS connection the file's acknowledgements go to (None: the Routing lookup's
    #: `*` row, for a file received before the hub recorded it).
    derms_connection: str | None


#: An instance's id: a UUID as text.
INSTANCE_ID_CHARS = 36
#: The longest business identifier kept (messageId, enrollmentId, ...).
BUSINESS_KEY_CHARS = 200

#: How deep `offset` may page: it reads every instance before the page (100,000 deep,
#: 67-250 ms at 5,000,000 on PostgreSQL; ten times deeper, ten times that, a request's work
#: no operator needs). Past it, the cursor pages as fast however deep, or a narrower search.
MAX_OFFSET = 100_000

#: A search counts its matches up to this many; past it the total says "more than", which
#: spares reading every match of a wide search (millions of instances) to count them.
COUNT_LIMIT = 10_000
#: The newest calls of a window the latency per target is read from: a week of a busy
#: hub's calls would be sorted whole on every view otherwise.
LATENCY_CALLS = 20_000


@dataclass(frozen=True)
class PageCursor:
    """Where a page of a search ended, newest first: the next page starts after this
    instance, however many were received since, and reads no instance before it."""

    received_at: datetime
    instance_id: str

    def text(self) -> str:
        """Opaque to callers, safe in a URL as it is."""
        plain = f"{self.received_at.isoformat()}|{self.instance_id}"
        return base64.urlsafe_b64encode(plain.encode()).decode().rstrip("=")

    @classmethod
    def of(cls, text: str) -> PageCursor:
        """ValueError, naming what is wrong, for a text no page gave."""
        try:
            plain = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            moment, instance_id = plain.split("|")
            received_at = datetime.fromisoformat(moment)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise ValueError("not a cursor a page of this search gave (next_cursor)") from None
        if received_at.tzinfo is None or not 0 < len(instance_id) <= INSTANCE_ID_CHARS:
            raise ValueError("not a cursor a page of this search gave (next_cursor)")
        return cls(received_at, instance_id)


@dataclass(frozen=True)
class InstanceFilter:
    """Which instances to find: each criterion given narrows the selection."""

    flows: tuple[str, ...] = ()
    status: str | None = None
    business_key: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    limit: int = 50
    offset: int = 0
    #: The page after the one that ended there (newest first); `offset` counts from it.
    after: PageCursor | None = None


@dataclass(frozen=True)
class HourCount:
    """How many of one flow's instances received in one clock hour (UTC) stand at a status."""

    flow: str
    status: str
    hour: datetime
    count: int


#: The windows the dashboard and the ops API's latency answer look back over.
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
Window = Literal["1h", "24h", "7d"]


class TargetLatency(_View):
    """How long one outside system's calls took in a window, answered or not (`failed`:
    those that got an error answer or none): the median and the 95th percentile by nearest
    rank (the shortest duration that at least half, or 95 %, of the calls took no longer
    than)."""

    target: str
    calls: int
    failed: int
    p50_ms: float
    p95_ms: float


class LatencyByTarget(_View):
    """The calls each outside system got since `since`, as the instances' activities keep
    them: CPMCS, each DERMS connection (`DERMS <name>`), the file stores (`ftp`, `object
    storage`); by target name."""

    window: Window
    since: datetime
    targets: list[TargetLatency]
    newest_only: bool = Field(
        description="the window held more than 20,000 calls: the figures are of its newest 20,000"
    )


class InstanceSummary(_View):
    id: str
    flow: str
    flow_identifier: str
    status: InstanceStatus
    caller: str | None
    error: str | None
    skipped_reason: str | None
    attempts: int
    resubmit_of: str | None
    parent_id: str | None
    received_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    business_keys: list[BusinessKey]


class InstanceDetail(InstanceSummary):
    payload: Any
    reply: Any | None
    #: When retention purged the payload, the reply and a file's rows (both then null).
    payload_purged_at: datetime | None = None
    resubmitted_as: list[str]
    children: list[str]
    file: FileProgress | None = None
    activities: list[KeptActivity]
    #: The W3C trace id of its trace (docs/tracing.md); null when it was not traced.
    trace_id: str | None = Field(
        None,
        description="W3C trace id (32 hex digits) of the instance's trace, to look it up in "
        "the tracing backend; null when tracing is off and its caller sent no traceparent",
        pattern="^[0-9a-f]{32}$",
    )


class InstancePage(BaseModel):
    items: list[InstanceSummary]
    #: The instances the search selects, counted up to COUNT_LIMIT (10,000).
    total: int
    #: False: the search selects more than `total`.
    total_exact: bool = True
    limit: int
    offset: int
    #: Give as `cursor` for the next page; null: this page is the last.
    next_cursor: str | None = None


class HubProcessView(_View):
    """A hub process heard from lately: `command` is serve, worker or run."""

    name: str
    command: str
    started_at: datetime
    seen_at: datetime
