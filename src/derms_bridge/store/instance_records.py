"""What the instances' store gives: an instance as kept, with its history, a page of them,
and what a run was started with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from derms_bridge.schemas.ops import BusinessKey, KeptActivity, PageCursor
from derms_bridge.tracing import TraceRef


@dataclass(frozen=True)
class StoredMessage:
    """What a run was started with, for running it again, how it stands, and the run that
    resubmitted it, if one did."""

    flow: str
    payload: Any
    parent_id: str | None
    status: str
    resubmitted_as: str | None
    #: When retention purged the payload: nothing is left to run again.
    payload_purged_at: datetime | None
    #: Where its trace hangs, for a resubmit's link to it.
    trace: TraceRef | None


@dataclass(frozen=True)
class InstanceRecord:
    """An instance as kept, with its business identifiers in the order they were learned."""

    id: str
    flow: str
    status: str
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
    #: When retention purged its payload, reply and file rows (None: kept).
    payload_purged_at: datetime | None
    #: Its trace's id (docs/tracing.md), None when it was not traced.
    trace_id: str | None


@dataclass(frozen=True)
class InstanceHistory(InstanceRecord):
    """An instance with what it was sent and answered, the runs that came of it and its
    activities in order."""

    payload: Any
    reply: Any
    resubmitted_as: list[str]
    children: list[str]
    activities: list[KeptActivity]


@dataclass(frozen=True)
class InstanceRecords:
    """One page of the instances a filter selects, and how many it selects in all (up to
    COUNT_LIMIT: `total_exact` false past it)."""

    items: list[InstanceRecord]
    total: int
    total_exact: bool
    #: Where the next page starts; None: this page is the last.
    next_after: PageCursor | None
