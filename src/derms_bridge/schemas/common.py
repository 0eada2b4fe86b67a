"""Shapes shared by many flows: MsgAck, the reply to CPMCS, and time stamps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

AckCode = Literal["SUCCESS", "ERROR", "FAILURE"]


def iso_now() -> str:
    """UTC with milliseconds and Z, as every MsgAck time is written."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: A time the hub writes (iso_now): RFC 3339, UTC with milliseconds and Z.
HubTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


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
IsoDateTime = Annotated[
    str,
    AfterValidator(_iso_datetime),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def parse_cpmcs_datetime(value: str) -> datetime:
    """An ISO 8601 date-time with an offset that CPMCS can take (any ISO 8601 form: basic,
    week date; an offset of whole minutes); ValueError names what is wrong."""
    parsed = parse_iso_datetime(value)
    offset = parsed.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        raise ValueError(f"{value!r} has an offset in seconds; CPMCS takes whole minutes")
    return parsed


def cpmcs_datetime(moment: datetime) -> str:
    """A date-time as CPMCS takes it: ISO 8601 extended, `Z` for UTC, the fraction of a
    second only when there is one (milliseconds when they say it all)."""
    if not moment.microsecond:
        timespec = "seconds"
    elif moment.microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    text = moment.isoformat(timespec=timespec)
    return text.removesuffix("+00:00") + "Z" if moment.utcoffset() == timedelta(0) else text


def cpmcs_date(value: str) -> date:
    """The calendar date of an ISO 8601 date-time, where it was written (its own offset)."""
    return parse_cpmcs_datetime(value).date()


def _cpmcs_datetime(value: str) -> str:
    return cpmcs_datetime(parse_cpmcs_datetime(value))


#: An ISO 8601 date-time with an offset, in any of its valid forms, kept and sent written
#: as CPMCS takes it (`20261201T080000Z` becomes `2026-12-01T08:00:00Z`).
CpmcsDateTime = Annotated[
    str,
    AfterValidator(_cpmcs_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with an offset; written as RFC 3339 on the way to CPMCS",
        }
    ),
]


def _json_number(expected: str) -> BeforeValidator:
    """JSON Schema's integer and number: a JSON number (10.0 is the integer 10), never
    true/false nor a string of digits, which pydantic's lax mode would turn into numbers."""

    def refuse_other_kinds(value: Any) -> Any:
        if isinstance(value, bool | str):
            kind = "true or false" if isinstance(value, bool) else "a string"
            raise PydanticCustomError(
                f"{expected}_type",
                "Input should be a valid {expected}, not {kind}",
                {"expected": expected, "kind": kind},
            )
        return value

    return BeforeValidator(refuse_other_kinds)


#: An integer as JSON Schema has it: a JSON number without a fraction.
JsonInt = Annotated[int, _json_number("integer")]
#: A JSON number, whole or not.
JsonNumber = Annotated[int | float, _json_number("number")]


#: The most records one enrollment batch holds (DERMS sends tens; room for a backlog).
MAX_BATCH_RECORDS = 1000

#: The most assets one enrollment request names.
MAX_ASSETS = 100

#: The most items of any other list a message carries: CPMCS's own limit for one list.
MAX_LIST_ITEMS = 2000


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


class PassThrough(Wire):
    """A structure the hub passes on: a field it does not know arrives at the target as it
    came, null included (the fields it knows are left out when null, as everywhere)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _with_unknown_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and self.__pydantic_extra__:
            for name, value in self.__pydantic_extra__.items():
                data.setdefault(name, value)
        return data


class AckResponse(Wire):
    id: str
    value: str
    responseCode: AckCode
    responseTimeISO: HubTime = Field(default_factory=iso_now)
    dacsMessageId: str | None = None


class AckResponses(Wire):
    response: list[AckResponse] = Field(max_length=MAX_LIST_ITEMS)


class MsgAckBody(Wire):
    ackType: AckCode
    whenISO: HubTime = Field(default_factory=iso_now)
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
