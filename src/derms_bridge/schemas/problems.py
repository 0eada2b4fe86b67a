"""RFC 9457 problem details: the body of every error the hub answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:derms-bridge:problem:"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

_TYPES = {
    401: "unauthorized",
    404: "not-found",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "too-many-requests",
    502: "target-failed",
    504: "target-timeout",
}


#: A fault of the hub's own configuration, found before any target was called (a lookup
#: without the row a message needs, a Routing row naming no connection): answered 500, for
#: the hub, not a target, failed, and no retry helps until an operator fixes it.
CONFIGURATION_ERROR = "configuration-error"
_TYPE_TITLES = {CONFIGURATION_ERROR: "Configuration error"}


def problem_body(
    status: int,
    detail: str,
    *,
    instance_id: str | None = None,
    problem_type: str | None = None,
) -> dict[str, Any]:
    """`problem_type` when the status alone does not say which problem it is."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + (problem_type or _TYPES.get(status, "error")),
        "title": _TYPE_TITLES.get(problem_type or "") or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance_id is not None:
        body["instanceId"] = instance_id
    return body


def field_path(location: Sequence[int | str]) -> str:
    """("body", "enrollmentRequests", 0, "messageId") -> enrollmentRequests[0].messageId"""
    parts = list(
        location[1:] if location and location[0] in ("body", "query", "path") else location
    )
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


class FieldError(BaseModel):
    """One bad field of a refused message: where it is, and what is wrong with it."""

    field: str = Field(description="its path in the message: enrollmentRequests[0].messageId")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error the hub answers."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instanceId: str | None = Field(
        None, description="the instance the hub kept of the request, when it kept one"
    )
    errors: list[FieldError] | None = Field(
        None, description="each bad field, the first 100; a last entry counts the rest"
    )
