"""The console's application, mounted by the hub at /console."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from derms_bridge.bootstrap import Hub
from derms_bridge.console.pages import (
    bulk_resubmit,
    connections,
    dashboard,
    instance,
    instances,
    lookups,
    schedules,
    storage,
)
from derms_bridge.console.sessions import ConsoleSession
from derms_bridge.console.web import (
    CSRF_CHECKED,
    HERE,
    ROOT,
    ConsoleState,
    CsrfRefused,
    LoginRequired,
    SessionDep,
    StateDep,
    is_htmx,
    render,
)
from derms_bridge.credentials import CredentialChecksBusy
from derms_bridge.login_throttle import Attempt, Throttled

# The pages load nothing but their own script and stylesheet, and no site may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

CONSOLE_OFF_PAGE = """<!doctype html><title>Console off</title>
<h1>The console is off</h1>
<p>It needs <code>console.session_secret</code> in the settings (or the environment
variable <code>DERMS_BRIDGE_CONSOLE__SESSION_SECRET</code>): a random value of 32
characters or more, the same on every hub process behind one address, for example
from <code>python -c "import secrets; print(secrets.token_urlsafe(32))"</code>.</p>
"""

_HTTP_ERRORS = {
    404: ("Not found", "There is no such page."),
    405: ("Not allowed", "This page does not take this kind of request."),
}

auth = APIRouter(dependencies=CSRF_CHECKED)


def _safe_next(target: str | None) -> str:
    """Only a console page: a login never sends anyone to another site."""
    if target and target.startswith(ROOT + "/") and not target.startswith("//"):
        return target
    return ROOT + "/"


@auth.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    current = session or ConsoleSession.anonymous()
    response = render(
        request,
        "login.html",
        {"next": _safe_next(request.query_params.get("next"))},
        session=current,
    )
    if session is None:
        state.cookies.write(response, request, current)
    return response


@auth.post("/login", response_class=HTMLResponse)
async def log_in(request: Request, state: StateDep, session: SessionDep) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    client = request.client.host if request.client else "unknown"
    authenticator = state.hub.authenticator
    try:
        principal = await state.hub.login_throttle.admit(
            Attempt(username, client, "console"),
            authenticator.remembered(username, password),
            lambda: authenticator.check_password(username, password),
            authenticator.guess(username, password),
        )
    except Throttled as refusal:
        minutes = max(1, round(refusal.retry_after / 60))
        message = f"Too many failed logins. Try again in about {minutes} minute(s)."
        return render(
            request,
            "login.html",
            {"error": message, "next": target, "username": username},
            status_code=429,
            session=session,
        )
    except CredentialChecksBusy:
        return render(
            request,
            "login.html",
            {
                "error": "The hub is busy checking passwords. Try again in a moment.",
                "next": target,
                "username": username,
            },
            status_code=503,
            session=session,
        )
    if principal is None or principal.role != "operator":
        return render(
            request,
            "login.html",
            {"error": "Wrong username or password.", "next": target, "username": username},
            status_code=401,
            session=session,
        )
    response = RedirectResponse(target, status_code=303)
    state.cookies.write(response, request, ConsoleSession.logged_in(principal.name))
    return response


@auth.post("/logout")
async def log_out(request: Request, state: StateDep, session: SessionDep) -> Response:
    if session is not None and session.operator is not None:
        await state.logouts.log_out(session.digest, datetime.now(UTC) + state.cookies.max_age)
    response = RedirectResponse(ROOT + "/login", status_code=303)
    state.cookies.clear(response, request)
    return response


def create_console(hub: Hub) -> FastAPI:
    """The console; without a session secret in the settings, a page saying how to turn it on."""
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    secret = hub.settings.console.session_secret
    if secret is None:

        @console.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
        async def console_off(path: str) -> Response:
            return HTMLResponse(CONSOLE_OFF_PAGE, status_code=503)

        return console

    console.state.console = ConsoleState.of(hub, secret.get_secret_value())

    @console.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @console.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired) -> Response:
        target = ROOT + "/login"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{target}?next={quote(here)}", status_code=303)

    @console.exception_handler(CsrfRefused)
    async def refused(request: Request, _exc: CsrfRefused) -> Response:
        return render(request, "refused.html", status_code=403)

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title, message = _HTTP_ERRORS.get(
            exc.status_code, ("Refused", "The console cannot answer this request.")
        )
        return render(
            request,
            "error.html",
            {"title": title, "message": message},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @console.exception_handler(RequestValidationError)
    async def unreadable(request: Request, _exc: RequestValidationError) -> Response:
        message = "The console could not read this request. Nothing was done."
        return render(
            request, "error.html", {"title": "Not understood", "message": message}, status_code=422
        )

    @console.exception_handler(Exception)
    async def unexpected(request: Request, _exc: Exception) -> Response:
        # Never what went wrong: that is in the hub's log, where the server writes it. Sent
        # from outside the middleware, so the headers it adds are added here.
        message = "The console met an unexpected error; it is in the hub's log."
        return render(
            request,
            "error.html",
            {"title": "Error", "message": message},
            status_code=500,
            headers=SECURITY_HEADERS,
        )

    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(auth)
    for page in (
        dashboard,
        instances,
        instance,
        bulk_resubmit,
        lookups,
        schedules,
        storage,
        connections,
    ):
        console.include_router(page.router)
    return console
