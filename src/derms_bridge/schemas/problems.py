"""RFC 9457 problem details: the body of every error the hub answers."""

from __future__ import annotations

from typing import Any

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
    502: "target-failed",
    504: "target-timeout",
}


def problem_body(status: int, detail: str, *, instance_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + _TYPES.get(status, "error"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance_id is not None:
        body["instanceId"] = instance_id
    return body
