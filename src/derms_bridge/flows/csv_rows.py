"""Checks on the fields of a CSV row, naming the column at fault, and the date-times made
the form CPMCS takes."""

from __future__ import annotations

import functools
from datetime import UTC

from derms_bridge.schemas.common import cpmcs_datetime, parse_cpmcs_datetime


# A file's rows mostly share their times: each distinct one is parsed once.
@functools.lru_cache(maxsize=4096)
def utc_z(value: str) -> str:
    """`value`, an ISO 8601 date-time with any offset CPMCS can take, as the same moment in
    UTC, written as CPMCS takes it (with Z): computed from the parsed value. ValueError says
    why `value` is not one."""
    return cpmcs_datetime(parse_cpmcs_datetime(value).astimezone(UTC))


def utc_field(column: str, value: str, *, required: bool = True) -> str:
    """A date-time field as CPMCS takes it (utc_z); an empty field stays empty when it is not
    `required`. ValueError names the column and says what is wrong."""
    if not value:
        if required:
            raise ValueError(f"{column}: is empty")
        return value
    try:
        return utc_z(value)
    except ValueError as exc:
        raise ValueError(f"{column}: {exc}") from None


def length_problem(column: str, value: str, limit: int, *, required: bool = True) -> str | None:
    """Why `value` will not fit CPMCS's field of `limit` characters, or None."""
    if required and not value:
        return f"{column}: is empty"
    if len(value) > limit:
        return f"{column}: {len(value)} characters, CPMCS takes at most {limit}"
    return None
