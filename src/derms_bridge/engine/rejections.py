"""Messages refused before their flow ran (a malformed body, a schema error, a limit): what
of them is kept, as a `rejected` instance an operator can find and read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: The business identifiers looked for in a refused body, whatever else is wrong with it.
IDENTIFIER_FIELDS = (
    "messageId",
    "syncRequestId",
    "enrollmentId",
    "eventId",
    "deviceId",
    "communicationId",
    "drmsInstanceId",
    "unavailabilityId",
    "aggregatorId",
    "subscriptionId",
    "fileName",
)

#: At most this many identifiers of one kind are kept of one body.
IDENTIFIERS_PER_KIND = 5

_IDENTIFIER = re.compile(
    r'"(' + "|".join(IDENTIFIER_FIELDS) + r')"\s*:\s*(?:"((?:[^"\\]|\\.){1,200})"|(-?\d{1,30}))'
)


@dataclass(frozen=True)
class ReceivedBody:
    """The beginning of a body as it came: `truncated` when more came, or would have, than
    was kept."""

    data: bytes
    truncated: bool
    content_type: str

    def text(self) -> str:
        # A JSON column holds text: bytes that are not UTF-8, and NUL, become U+FFFD.
        return self.data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")

    def as_payload(self) -> dict[str, Any]:
        """What a rejected instance keeps as its payload."""
        return {
            "receivedBody": self.text(),
            "truncated": self.truncated,
            "contentType": self.content_type,
        }


def identifiers_in(text: str) -> list[tuple[str, str]]:
    """The business identifiers readable in a body, even one that is not valid JSON: each
    `"messageId": "..."` (or a number) found, in order, a few of each kind."""
    found: dict[str, list[str]] = {}
    for match in _IDENTIFIER.finditer(text):
        kind, value = match[1], match[3]
        if match[2] is not None:
            try:
                value = json.loads(f'"{match[2]}"')
            except ValueError:
                value = match[2]
        value = value.replace("\x00", "\ufffd")
        values = found.setdefault(kind, [])
        if len(values) < IDENTIFIERS_PER_KIND and value not in values:
            values.append(value)
    return [(kind, value) for kind, values in found.items() for value in values]
