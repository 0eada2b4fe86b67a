"""What every part of the settings shares: a strict model, a checked CA bundle, a secret
that is not the example's placeholder, timeouts."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def readable_ca_bundle(value: Path | None) -> Path | None:
    """A CA bundle is read when the settings are, so that a bad one stops the hub at start-up
    instead of failing its first call to the system."""
    if value is None:
        return None
    if not value.is_file():
        raise ValueError(f"CA bundle {value} does not exist")
    try:
        ssl.create_default_context(cafile=str(value))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"CA bundle {value} cannot be read as PEM certificates: {exc}") from None
    return value


#: Words the example settings hold where a secret must go.
_PLACEHOLDER_WORDS = ("change-me", "changeme", "replace")


def _not_placeholder(value: SecretStr) -> SecretStr:
    words = value.get_secret_value().strip().lower()
    if any(word in words for word in _PLACEHOLDER_WORDS):
        raise ValueError("still the example's placeholder: put the real secret here")
    return value


#: A secret that the settings refuse to start with while it is the example's placeholder.
Secret = Annotated[SecretStr, AfterValidator(_not_placeholder)]


class Timeouts(Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    read: float = Field(30.0, gt=0, description="seconds to wait for each answer")


class Schedule(Strict):
    """When a scheduled flow runs: a cron expression read in a time zone."""

    cron: str = Field(
        description="five fields (minute hour day month weekday), or six with seconds first"
    )
    timezone: str = Field("UTC", description="an IANA time zone, e.g. Europe/Paris")
    enabled: bool = True

    def latest_tick(self, now: datetime) -> datetime:
        """The schedule's latest tick at or before `now`, in UTC."""
        local = now.astimezone(ZoneInfo(self.timezone))
        # cronsim counts a start with microseconds as its own first candidate going back.
        tick: datetime = next(CronSim(self.cron, local.replace(microsecond=1), reverse=True))
        return tick.astimezone(UTC)

    def next_tick(self, now: datetime) -> datetime:
        """The schedule's first tick after `now`, in its own time zone."""
        tick: datetime = next(CronSim(self.cron, now.astimezone(ZoneInfo(self.timezone))))
        return tick

    @field_validator("cron")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _is_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        return value
