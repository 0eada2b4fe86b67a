"""What every console route shares: the hub, the session, the operator, CSRF, rendering."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from derms_bridge.bootstrap import Hub, secrets_in
from derms_bridge.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    ConsoleSession,
    SessionCookies,
    csrf_token_matches,
)
from derms_bridge.engine.redaction import Redactor
from derms_bridge.store.console_security import ConsoleLogouts

ROOT = "/console"
HERE = Path(__file__).parent

templates = Jinja2Templates(directory=HERE / "templates")


@dataclass
class ConsoleState:
    """The console's own parts, kept on its app."""

    hub: Hub
    cookies: SessionCookies
    logouts: ConsoleLogouts
    redact: Redactor
    #: One lookup edit at a time in this process: read, check, write and swap go together.
    lookup_edits: asyncio.Lock

    @classmethod
    def of(cls, hub: Hub, secret: str) -> ConsoleState:
        console = hub.settings.console
        return cls(
            hub=hub,
            cookies=SessionCookies(
                secret,
                max_age_seconds=int(console.session_hours * 3600),
                behind_proxy=console.behind_proxy,
            ),
            logouts=ConsoleLogouts(hub.store),
            redact=Redactor(secrets_in(hub.settings)),
            lookup_edits=asyncio.Lock(),
        )


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _session(request: Request) -> ConsoleSession | None:
    return _state(request).cookies.read(request)


async def _operator(request: Request) -> str:
    state = _state(request)
    session = state.cookies.read(request)
    if session is None or session.operator is None:
        raise LoginRequired
    if await state.logouts.logged_out(session.digest):
        raise LoginRequired
    caller = state.hub.settings.callers.get(session.operator)
    if caller is None or caller.role != "operator":
        raise LoginRequired
    request.state.console_session = session
    return session.operator


async def _csrf_checked(request: Request) -> None:
    """Every unsafe request carries the session's token, in a form field or a header."""
    if request.method in SAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    if not csrf_token_matches(_session(request), presented):
        raise CsrfRefused


StateDep = Annotated[ConsoleState, Depends(_state)]
SessionDep = Annotated[ConsoleSession | None, Depends(_session)]
OperatorDep = Annotated[str, Depends(_operator)]
CSRF_CHECKED = [Depends(_csrf_checked)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    session: ConsoleSession | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A page or fragment, with the session's CSRF token and operator at hand."""
    current = session or getattr(request.state, "console_session", None) or _session(request)
    return templates.TemplateResponse(
        request,
        template,
        {
            "root": ROOT,
            "csrf_token": current.csrf_token if current else "",
            "operator": current.operator if current else None,
            **(context or {}),
        },
        status_code=status_code,
        headers=headers,
    )
