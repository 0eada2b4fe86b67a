"""What a purge removed (its instance's reply), and what one would remove (a dry run)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PurgeReport(BaseModel):
    """A purge run's outcome: rows removed, table by table."""

    payloadsPurged: int = Field(
        description="instances whose payload, reply and file rows went, the instance kept"
    )
    removed: dict[str, int] = Field(
        description="rows deleted per table: instances, business_keys, activities, "
        "segments, staged_file_chunks..."
    )
    batches: int = Field(description="short transactions the purge took")


class PurgeCandidates(BaseModel):
    """What a purge would remove now, for one flow and outcome (`derms-bridge purge
    --dry-run`)."""

    flow: str
    outcome: str
    payloadDays: int
    instanceDays: int
    payloads: int = Field(
        description="payloads (and file rows) that would be purged, of instances that stay "
        "(an instance deleted takes its payload with it)"
    )
    instances: int = Field(
        description="instances that would be deleted; those a later run or a child names "
        "go after it, and are not counted"
    )
