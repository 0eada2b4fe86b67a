"""Checks on the fields of a CSV row, naming the column at fault."""

from __future__ import annotations

import functools
from datetime import timedelta

from derms_bridge.schemas.common import parse_iso_datetime


# A file's rows mostly share their times: each distinct one is parsed once.
@functools.lru_cache(maxsize=4096)
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
