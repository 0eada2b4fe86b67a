"""How long instances are kept, by outcome and flow, and when the purge runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from derms_bridge.catalog import BY_KEY
from derms_bridge.settings.common import Schedule, Strict
from derms_bridge.settings.file_storage import StorageSettings

#: The outcomes retention is set for, and the instance statuses each one covers; an
#: instance in progress is never purged.
Outcome = Literal["succeeded", "failed", "rejected"]
OUTCOME_STATUSES: dict[Outcome, tuple[str, ...]] = {
    "succeeded": ("succeeded", "skipped", "resolved"),
    "failed": ("failed",),
    "rejected": ("rejected",),
}


class Keep(Strict):
    """How many days after an instance ended its payloads and file rows are kept, and the
    instance itself (its status, business identifiers, activities, error)."""

    payload_days: int = Field(ge=1, description="the payload, the reply and a file's rows")
    instance_days: int = Field(ge=1, description="the instance, then deleted whole")

    @model_validator(mode="after")
    def _payload_within_instance(self) -> Keep:
        if self.payload_days > self.instance_days:
            raise ValueError(
                f"payload_days ({self.payload_days}) must not exceed instance_days "
                f"({self.instance_days}): a payload is kept only with its instance"
            )
        return self


class KeepOverride(Strict):
    """A flow's own days for an outcome; what is left out is the default's."""

    payload_days: int | None = Field(None, ge=1)
    instance_days: int | None = Field(None, ge=1)


class RetentionByOutcome(Strict):
    succeeded: Keep = Keep(payload_days=7, instance_days=90)
    failed: Keep = Keep(payload_days=180, instance_days=180)
    rejected: Keep = Keep(payload_days=180, instance_days=180)


class OverrideByOutcome(Strict):
    succeeded: KeepOverride = KeepOverride()
    failed: KeepOverride = KeepOverride()
    rejected: KeepOverride = KeepOverride()


class ArchiveSettings(Strict):
    """Where the purge writes what it removes, before removing it."""

    store: Annotated[StorageSettings, Field(discriminator="type")]
    folder: str = Field(
        min_length=1,
        description="the directory (local, FTP, SFTP) or the bucket (OCI, S3); it must exist",
    )
    namespace: str | None = Field(None, description="OCI Object Storage's namespace")


class Retention(Strict):
    """What the purge removes, and when it runs (a built-in schedule, claimed once across
    the hub processes like the scheduled flows' ticks)."""

    default: RetentionByOutcome = RetentionByOutcome()
    flows: dict[str, OverrideByOutcome] = Field(
        default_factory=dict, description="a flow's key to its own days, outcome by outcome"
    )
    schedule: Schedule = Schedule(cron="17 * * * *")
    batch_size: int = Field(
        1000, ge=10, le=10_000, description="instances (or file rows) per transaction"
    )
    archive: ArchiveSettings | None = Field(
        None, description="write what the purge removes to a file store first; none: not kept"
    )

    @field_validator("flows")
    @classmethod
    def _known_flows(cls, flows: dict[str, OverrideByOutcome]) -> dict[str, OverrideByOutcome]:
        for key in flows:
            if key not in BY_KEY:
                raise ValueError(f"{key!r} is not a flow's key (e.g. enrollment_request)")
        return flows

    @model_validator(mode="after")
    def _overrides_keep_payloads_within_instances(self) -> Retention:
        for flow in self.flows:
            for outcome in OUTCOME_STATUSES:
                kept = self.keep(flow, outcome)
                if kept.payload_days > kept.instance_days:
                    raise ValueError(
                        f"flows.{flow}.{outcome}: payload_days ({kept.payload_days}) must not "
                        f"exceed instance_days ({kept.instance_days})"
                    )
        return self

    def keep(self, flow: str, outcome: Outcome) -> Keep:
        """The days in force for a flow's instances of an outcome."""
        default: Keep = getattr(self.default, outcome)
        override = self.flows.get(flow)
        if override is None:
            return default
        own: KeepOverride = getattr(override, outcome)
        payload_days = own.payload_days or default.payload_days
        instance_days = own.instance_days or default.instance_days
        # Built without validation: an override is checked, naming its field, above.
        return Keep.model_construct(payload_days=payload_days, instance_days=instance_days)
