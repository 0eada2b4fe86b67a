"""The operations API's view of schedules (GET /ops/schedules, POST /ops/schedules/{flow}/run)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LastRunView(BaseModel):
    instance_id: str
    status: str = Field(description="in_progress, succeeded, failed or skipped (no file found)")
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    skipped_reason: str | None = Field(description="why a skipped run had nothing to do")


class ScheduleView(BaseModel):
    flow: str = Field(description="the flow's key, e.g. device_score_ftp")
    flow_identifier: str
    title: str
    cron: str | None = Field(description="None: no schedule; the flow runs only when started")
    timezone: str | None
    enabled: bool
    next_run: datetime | None = Field(description="the next tick, in the schedule's time zone")
    last_run: LastRunView | None
    running: bool
    running_instance: str | None


class RunStarted(BaseModel):
    instanceId: str
    flow: str
