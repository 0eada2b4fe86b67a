"""Checks on the fields of a CSV row, naming the column at fault."""

from __future__ import annotations

from datetime import timedelta

from derms_bridge.schemas.common import parse_iso_datetime


def utc_problem(column: str, value: str) -> str | None:
    """Why `value` is not a UTC date-time (ISO 8601 with Z or +00:00), or None."""
    try:
        moment = parse_iso_datetime(value)
    except ValueError as exc:
        return f"{column}: {exc}"
    if moment.utcoffset() != timedelta(0):
        return f"{column}: {value!r} is not in UTC (write it with Z)"
    return None


def length_problem(column: str, value: str, limit: int, *, required: bool = True) -> str | None:
    """Why `value` will not fit CPMCS's field of `limit` characters, or None."""
    if required and not value:
        return f"{column}: is empty"
    if len(value) > limit:
        return f"{column}: {len(value)} characters, CPMCS takes at most {limit}"
    return None
