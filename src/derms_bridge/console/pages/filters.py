"""The time windows and the instance filters that the dashboard, the instances list and bulk
resubmit share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from derms_bridge.catalog import BY_KEY
from derms_bridge.schemas.ops import (
    BUSINESS_KEY_CHARS,
    INSTANCE_STATUSES,
    MAX_OFFSET,
    WINDOWS,
    InstanceFilter,
    PageCursor,
)

PAGE_SIZE = 25


@dataclass(frozen=True)
class InstanceQuery:
    """The instances list's filters as the operator typed them, and what was wrong in them."""

    flow: str = ""
    status: str = ""
    key: str = ""
    window: str = ""
    received_from: str = ""
    received_to: str = ""
    page: int = 1
    #: Where the page starts (the page before's next_cursor): an older page is read from
    #: there, not counted from the first, however deep it is.
    cursor: str = ""
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> InstanceQuery:
        def text(name: str) -> str:
            value = params.get(name)
            return value.strip() if isinstance(value, str) else ""

        problems: list[str] = []
        flow, status, window = text("flow"), text("status"), text("window")
        if flow and flow not in BY_KEY:
            problems.append(f"there is no flow {flow!r}")
            flow = ""
        if status and status not in INSTANCE_STATUSES:
            problems.append(f"there is no status {status!r}")
            status = ""
        if window and window not in WINDOWS:
            problems.append(f"there is no window {window!r}")
            window = ""
        key = text("key")
        if len(key) > BUSINESS_KEY_CHARS or "\x00" in key:
            problems.append(f"a key is at most {BUSINESS_KEY_CHARS} characters, none of them NUL")
            key = ""
        page_text = text("page") or "1"
        page = _page_number(page_text)
        cursor = text("cursor")
        if cursor:
            try:
                PageCursor.of(cursor)
            except ValueError:
                problems.append("that page's link was not made by this console: page 1 instead")
                cursor, page = "", 1
        query = cls(
            flow=flow,
            status=status,
            key=key,
            window=window,
            received_from=text("received_from"),
            received_to=text("received_to"),
            page=page,
            cursor=cursor,
        )
        if query.received_from and _moment(query.received_from) is None:
            problems.append("from is not a date and time")
            query = replace(query, received_from="")
        if query.received_to and _moment(query.received_to) is None:
            problems.append("to is not a date and time")
            query = replace(query, received_to="")
        return replace(query, problems=tuple(problems))

    def instance_filter(self, limit: int = PAGE_SIZE) -> InstanceFilter:
        received_from = _moment(self.received_from)
        if self.window:
            since = datetime.now(UTC) - WINDOWS[self.window]
            received_from = max(received_from, since) if received_from else since
        return InstanceFilter(
            flows=(self.flow,) if self.flow else (),
            status=self.status or None,
            business_key=self.key or None,
            received_from=received_from,
            received_to=_moment(self.received_to),
            limit=limit,
            offset=0 if self.cursor else (self.page - 1) * limit,
            after=PageCursor.of(self.cursor) if self.cursor else None,
        )

    def query_string(self, **changes: Any) -> str:
        fields = {
            "flow": self.flow,
            "status": self.status,
            "key": self.key,
            "window": self.window,
            "received_from": self.received_from,
            "received_to": self.received_to,
            "page": self.page,
            "cursor": self.cursor,
        }
        fields.update(changes)
        return urlencode({name: value for name, value in fields.items() if value not in ("", 1)})


def _moment(text: str) -> datetime | None:
    """A date-time as an operator types it; one without an offset is UTC, as the pages show."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _page_number(text: str) -> int:
    """The page asked for, within the pages a search may reach; 1 for anything else. A
    number of more digits than the last page's is never turned into an int, which past
    4,300 digits Python refuses and before that the database cannot page to."""
    last_page = MAX_OFFSET // PAGE_SIZE
    if not text.isdigit():
        return 1
    if len(text) > len(str(last_page)):
        return last_page
    return min(max(int(text), 1), last_page)
