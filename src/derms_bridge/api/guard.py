"""Checks that run before a route reads its body: the caller, the content type, the size.

FastAPI parses and validates a body before it resolves dependencies, so a
dependency would answer a stranger's malformed body with 422 instead of 401, and
would read a body of any size. A route class runs these checks first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from derms_bridge.api.problems import problem, refused, refused_unreadable
from derms_bridge.api.refusals import read_kept_part, watch_body
from derms_bridge.api.security import address_of, caller_of
from derms_bridge.bootstrap import Hub
from derms_bridge.catalog import BY_KEY
from derms_bridge.credentials import Authenticator, CredentialChecksBusy
from derms_bridge.engine.big_messages import (
    OFF_LOOP_BYTES,
    BigMessagesBusy,
    Invalid,
    Unreadable,
)
from derms_bridge.flows.registry import SYNC_FLOWS
from derms_bridge.login_throttle import LoginThrottle, Throttled
from derms_bridge.settings.connections import Role

BodyKind = Literal["json", "multipart", "none"]

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="derms-bridge", Bearer'}

#: What every guarded route may answer before it looks at the request itself.
GUARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no credential, or not one of this route's caller: nothing is kept"},
    503: {
        "description": "too many password checks wait, or the database refuses writes for "
        "now: nothing of the request was kept; send it again after Retry-After seconds"
    },
    429: {
        "description": "too many failed logins of this user from this address, from this "
        "address or of this user: tried again after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


class BodyTooLarge(Exception):
    pass


async def _read_limited(request: Request, limit: int) -> None:
    """Read the body once, refusing it past `limit` bytes; later reads get the cached copy."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    request._body = b"".join(chunks)


def credentials_busy() -> Response:
    return problem(
        503,
        "too many password checks wait: try again in a moment",
        headers={"Retry-After": "1"},
    )


def throttled(refusal: Throttled) -> Response:
    return problem(
        429,
        f"too many failed logins: try again in {refusal.retry_after} s",
        headers={"Retry-After": str(refusal.retry_after)},
    )


async def _read_off_loop(request: Request, flow_key: str) -> Response | None:
    """Read a big message by the hub's worker process and leave it where the route's own
    reading finds it (`Request.json`), already validated; or the answer that refuses it."""
    hub: Hub = request.app.state.hub
    try:
        read = await hub.big_messages.read(flow_key, request._body)
    except BigMessagesBusy:
        return problem(
            503,
            "too many big messages wait to be read: try again in a moment",
            headers={"Retry-After": "1"},
        )
    if isinstance(read, Unreadable):
        return await refused_unreadable(request, read.cause)
    if isinstance(read, Invalid):
        raise RequestValidationError(read.errors)
    request._json = read
    return None


def _message_as_fastapi_reads_it(request: Request, model: type[BaseModel]) -> BaseModel | None:
    """The body as the message FastAPI's reading of it would hand a flow's trigger: parsed
    by `json.loads` and validated as Python, as FastAPI does; None for a body it would read
    otherwise (a media type other than application/json) or refuse, which FastAPI's own
    reading then answers as it always has."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return None
    try:
        return model.model_validate(json.loads(request._body))
    except Exception:
        return None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _refused_unread(request: Request, status: int, detail: str) -> Response:
    """Refuse a body the route has not read: only what a refusal keeps of it is read."""
    await read_kept_part(request)
    return await refused(request, status, detail)


def guarded(role: Role, body: BodyKind = "json") -> type[APIRoute]:
    """A route class that lets only callers of `role` in, with a JSON body within the limit.
    A flow's trigger route (its operation id a flow key) keeps what it refuses of its own
    caller as a rejected instance (api/refusals.py)."""

    class GuardedRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            kwargs["responses"] = {**GUARD_RESPONSES, **(kwargs.get("responses") or {})}
            super().__init__(path, endpoint, **kwargs)

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded_handler(request: Request) -> Response:
                authenticator: Authenticator = request.app.state.authenticator
                throttle: LoginThrottle = request.app.state.login_throttle
                try:
                    principal = await caller_of(
                        throttle,
                        authenticator,
                        request.headers.get("authorization"),
                        address_of(request),
                        "api",
                    )
                except Throttled as refusal:
                    return throttled(refusal)
                except CredentialChecksBusy:
                    return credentials_busy()
                if principal is None or principal.role != role:
                    return problem(
                        401,
                        f"this route needs the credential of a {role} caller",
                        headers=UNAUTHORIZED_HEADERS,
                    )
                request.state.principal = principal
                if self.operation_id in BY_KEY:
                    watch_body(
                        request,
                        self.operation_id,
                        principal.name,
                        request.app.state.rejected_body_bytes,
                    )
                if body == "multipart":
                    media = request.headers.get("content-type", "").split(";", 1)[0].strip()
                    if media.lower() != "multipart/form-data":
                        return await _refused_unread(
                            request, 415, "the body must be multipart/form-data"
                        )
                    file_limit: int = request.app.state.max_file_bytes
                    declared = request.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > file_limit:
                        return await _refused_unread(
                            request, 413, f"the body is larger than the limit of {file_limit} bytes"
                        )
                if body == "json" and request.method in ("POST", "PUT", "PATCH"):
                    if not _is_json(request.headers.get("content-type", "")):
                        return await _refused_unread(
                            request, 415, "the body must be application/json"
                        )
                    limit: int = request.app.state.max_json_body_bytes
                    declared = request.headers.get("content-length")
                    too_large = f"the body is larger than the limit of {limit} bytes"
                    if declared is not None and declared.isdigit() and int(declared) > limit:
                        return await _refused_unread(request, 413, too_large)
                    try:
                        await _read_limited(request, limit)
                    except BodyTooLarge:
                        return await refused(request, 413, too_large)
                    flow = SYNC_FLOWS.get(self.operation_id or "")
                    if flow is not None and len(request._body) >= OFF_LOOP_BYTES:
                        answer = await _read_off_loop(request, flow.info.key)
                        if answer is not None:
                            return answer
                    elif flow is not None:
                        message = _message_as_fastapi_reads_it(request, flow.message_model)
                        if message is not None:
                            # A flow's trigger takes its message and the request
                            # (routes/triggers.py). FastAPI's handler around it, solving
                            # the route's parameters, was 7-8% of a busy hub's samples
                            # (bench/README.md, issue 15's third profile).
                            response: Response = await self.endpoint(message, request)
                            return response
                return await handler(request)

            return guarded_handler

    return GuardedRoute
