"""What a trigger route keeps of a message it refuses from an authenticated caller: the
beginning of its body, copied as the route reads it, and the rejected instance it becomes.

A stranger's request (no credential, or another role's) is answered and forgotten; from
the route's own caller nothing is lost, even a body that is not JSON or is too large.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive

from derms_bridge.engine.rejections import ReceivedBody
from derms_bridge.errors import DatabaseUnavailable
from derms_bridge.schemas.problems import problem_body

#: What a trigger route's OpenAPI description of a refusal adds.
KEPT = "; the message is kept as a rejected instance, named by the problem's instanceId"


class BodyCopy:
    """Wraps a request's `receive`: the first `keep` bytes of the body are copied as they
    are read, never more, whatever the route reads after."""

    def __init__(self, receive: Receive, keep: int) -> None:
        self._receive = receive
        self._keep = keep
        self._data = bytearray()
        self._overflowed = False
        self._complete = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            room = self._keep - len(self._data)
            if len(chunk) > room:
                self._overflowed = True
            self._data += chunk[: max(room, 0)]
            self._complete = not message.get("more_body", False)
        return message

    @property
    def full(self) -> bool:
        """As much is kept as will be, or the body has all come."""
        return self._overflowed or self._complete

    def received(self, content_type: str) -> ReceivedBody:
        """What was kept; truncated when more came than was kept, or was not read."""
        return ReceivedBody(
            data=bytes(self._data),
            truncated=self._overflowed or not self._complete,
            content_type=content_type,
        )


@dataclass(frozen=True)
class Refusable:
    """A trigger route's authenticated message, kept as a rejected instance if refused."""

    flow_key: str
    caller: str
    copy: BodyCopy


def watch_body(request: Request, flow_key: str, caller: str, keep: int) -> None:
    """From here on, what the route reads of the body is copied for a refusal to keep."""
    copy = BodyCopy(request._receive, keep)
    request._receive = copy
    request.state.refusable = Refusable(flow_key=flow_key, caller=caller, copy=copy)


async def read_kept_part(request: Request) -> None:
    """Read the body as far as a refusal keeps of it, and no further (a body refused
    before the route read it: too large, or not of the route's type)."""
    refusable: Refusable | None = getattr(request.state, "refusable", None)
    if refusable is None or refusable.copy.full:
        return
    async for _chunk in request.stream():
        if refusable.copy.full:
            return


async def keep_refused(
    request: Request,
    status: int,
    detail: str,
    errors: Sequence[Mapping[str, Any]] | None,
) -> str | None:
    """The rejected instance made of a refused message from a route's own caller; None for
    any other request, or while the database refuses writes (the refusal stands)."""
    refusable: Refusable | None = getattr(request.state, "refusable", None)
    if refusable is None:
        return None
    hub = request.app.state.hub
    try:
        instance_id: str = await hub.engine.keep_rejected(
            refusable.flow_key,
            caller=refusable.caller,
            body=refusable.copy.received(request.headers.get("content-type", "")),
            problem=problem_body(status, detail),
            errors=[dict(error) for error in errors or []],
        )
    except DatabaseUnavailable as exc:
        hub.database_outage.refused(exc)
        return None
    return instance_id
