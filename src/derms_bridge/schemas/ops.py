"""What the operations API shows of instances and their activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

InstanceStatus = Literal["in_progress", "succeeded", "failed", "skipped"]


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class BusinessKey(_View):
    kind: str
    value: str


class ActivityView(_View):
    seq: int
    target: str
    operation: str
    method: str | None
    path: str | None
    http_status: int | None
    duration_ms: float
    error: str | None
    at: datetime


class InstanceSummary(_View):
    id: str
    flow: str
    flow_identifier: str
    status: InstanceStatus
    caller: str | None
    error: str | None
    attempts: int
    resubmit_of: str | None
    parent_id: str | None
    received_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    business_keys: list[BusinessKey]


class FileProgressView(_View):
    """A file flow's run: its segments done, failed and left, and what went wrong."""

    state: str
    run: int
    outcome: str | None
    failure: str | None
    row_errors: list[str]
    total_rows: int
    segments: dict[str, int]
    rows_sent: int
    segment_errors: list[str]
    ack_error: str | None


class InstanceDetail(InstanceSummary):
    payload: Any
    reply: Any | None
    resubmitted_as: list[str]
    children: list[str]
    file: FileProgressView | None = None
    activities: list[ActivityView]


class InstancePage(BaseModel):
    items: list[InstanceSummary]
    total: int
    limit: int
    offset: int


class HubProcessView(_View):
    """A hub process heard from lately: `command` is serve, worker or run."""

    name: str
    command: str
    started_at: datetime
    seen_at: datetime
