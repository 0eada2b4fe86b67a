"""Shapes shared by many flows: MsgAck, the reply to CPMCS, and time stamps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

AckCode = Literal["SUCCESS", "ERROR", "FAILURE"]


def iso_now() -> str:
    """UTC with milliseconds and Z, as every MsgAck time is written."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_datetime(value: str) -> datetime:
    """An ISO 8601 date-time with an offset or Z; ValueError names what is wrong."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone offset (add Z for UTC)")
    return parsed


def _iso_datetime(value: str) -> str:
    parse_iso_datetime(value)
    return value


#: An ISO 8601 date-time with an offset, kept as written (it goes on as it came).
IsoDateTime = Annotated[str, AfterValidator(_iso_datetime)]


class Wire(BaseModel):
    """A payload model: unknown fields ignored, names kept exactly as on the wire."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_character(cls, data: Any) -> Any:
        # PostgreSQL keeps no NUL in text or JSON, and no target system takes one: refused
        # here with the field's name, not met as a database error after the instance began.
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(value, str) and "\x00" in value:
                    raise ValueError(f"{name} contains a NUL character (\\u0000)")
        return data


class AckResponse(Wire):
    id: str
    value: str
    responseCode: AckCode
    responseTimeISO: str = Field(default_factory=iso_now)
    dacsMessageId: str | None = None


class AckResponses(Wire):
    response: list[AckResponse]


class MsgAckBody(Wire):
    ackType: AckCode
    whenISO: str = Field(default_factory=iso_now)
    responses: AckResponses


class AckMessage(Wire):
    MsgAck: MsgAckBody

    @classmethod
    def of(cls, responses: list[AckResponse], ack_type: AckCode | None = None) -> AckMessage:
        return cls(
            MsgAck=MsgAckBody(
                ackType=ack_type or overall_ack_type(r.responseCode for r in responses),
                responses=AckResponses(response=responses),
            )
        )


def overall_ack_type(codes: Iterable[AckCode]) -> AckCode:
    """FAILURE if any response is FAILURE, else ERROR if any is ERROR, else SUCCESS."""
    seen = set(codes)
    if "FAILURE" in seen:
        return "FAILURE"
    if "ERROR" in seen:
        return "ERROR"
    return "SUCCESS"


class ResponseDetails(Wire):
    externalId: str


class CpmcsReply(Wire):
    """The reply to a CPMCS outbound message."""

    responseDetails: ResponseDetails
