"""How a simulated target breaks or refuses calls: injected faults and a Basic credential check.

Both leave the admin routes under the simulator prefix (``/_sim``) alone, so a test can
always read state and change settings while the target itself misbehaves.
"""

import asyncio
import base64
import logging
import random
import secrets
from collections import deque
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from derms_bridge.sandbox.admin_routes import add_setting_routes
from derms_bridge.sandbox.kept import newest_kept

SIM_PREFIX = "/_sim"


class FaultSettings(BaseModel):
    """What every call to a simulated target suffers until the settings change.

    ``fail_calls`` picks single calls instead: the Nth target call since these settings were
    put (1-based; only calls to ``fail_calls_path`` count when that is set) answers
    ``status_code``, or 500 without one, and ``status_code`` no longer fails every other call.

    ``error_rate`` fails that fraction of calls with 500, drawn at random: only calls to
    ``error_rate_path`` when that is set; from a source seeded with ``error_seed`` when that
    is set (the same calls fail each time these settings are put), else from the
    simulator's own.

    A call whose caller has gone while ``latency_ms`` held it (the caller timed out and closed
    the connection) goes no further, unless ``apply_when_caller_gone``: then the target
    applies it all the same, as a server that never noticed would, and the caller's resend
    meets what it did.
    """

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    status_code: int | None = Field(default=None, ge=400, le=599)
    down: bool = False
    fail_calls: list[Annotated[int, Field(ge=1)]] | None = None
    fail_calls_path: str | None = None
    error_rate_path: str | None = None
    error_seed: int | None = None
    apply_when_caller_gone: bool = False

    @model_serializer(mode="wrap")
    def _leave_out_unused_call_numbers(
        self, serialize: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        # Settings without call numbers read back exactly as they did before the knob existed,
        # so that clients comparing the whole settings object keep working.
        settings: dict[str, Any] = serialize(self)
        if self.fail_calls is None and self.fail_calls_path is None:
            settings.pop("fail_calls", None)
            settings.pop("fail_calls_path", None)
        if self.error_rate_path is None and self.error_seed is None:
            settings.pop("error_rate_path", None)
            settings.pop("error_seed", None)
        if not self.apply_when_caller_gone:
            settings.pop("apply_when_caller_gone", None)
        return settings


class SimulatedOutageError(Exception):
    """Raised after the response has started, so that the server drops the connection."""


class FaultInjector:
    """The current fault settings of one simulator and the random source its failures draw on."""

    def __init__(self, seed: int | None = None) -> None:
        self._settings = FaultSettings()
        self.calls_counted = 0
        #: The calls whose caller had gone when their latency ended, since these settings.
        self.calls_abandoned: deque[dict[str, Any]] = newest_kept()
        # Seeded so that a test or a benchmark can replay the same sequence of random failures.
        self.rng = random.Random(seed)  # noqa: S311
        self._rng_of_simulator = self.rng

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: FaultSettings) -> None:
        # fail_calls numbers calls from the moment its settings take effect.
        self._settings = settings
        self.calls_counted = 0
        self.calls_abandoned = newest_kept()
        self.rng = (
            self._rng_of_simulator
            if settings.error_seed is None
            else random.Random(settings.error_seed)  # noqa: S311
        )

    def count_call(self, path: str) -> int | None:
        """Counts a target call for ``fail_calls``; its number when it must fail, else None."""
        settings = self._settings
        if settings.fail_calls is None:
            return None
        if settings.fail_calls_path is not None and path != settings.fail_calls_path:
            return None
        self.calls_counted += 1
        return self.calls_counted if self.calls_counted in settings.fail_calls else None


class _OutageLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedOutageError))


_OUTAGE_LOG_FILTER = _OutageLogFilter()


def is_admin_path(path: str, prefix: str = SIM_PREFIX) -> bool:
    return path == prefix or path.startswith(prefix + "/")


async def _read_request(receive: Receive) -> tuple[list[Message], bool]:
    """The request's body messages, read to the end; and whether its caller went meanwhile."""
    messages: list[Message] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return messages, True
        messages.append(message)
        if not message.get("more_body", False):
            return messages, False


async def _caller_leaves_within(receive: Receive, seconds: float) -> bool:
    """Whether the caller closes the connection within ``seconds``.

    Once the body is read, the server answers ``receive`` only when the caller goes.
    """
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` for the target: the body already read, then the server's own."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class FaultMiddleware:
    """Applies the injector's settings to every HTTP request outside the admin prefix."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, prefix: str) -> None:
        self.app = app
        self.injector = injector
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_admin_path(scope["path"], self.prefix):
            await self.app(scope, receive, send)
            return
        settings = self.injector.settings
        # The list of the settings in force at arrival: a call held over from earlier
        # settings is not reported under the ones put since.
        calls_abandoned = self.injector.calls_abandoned
        # Numbered on arrival, before any latency, so that the Nth call sent is the Nth counted.
        failing_call_number = self.injector.count_call(scope["path"])
        if settings.latency_ms:
            body, gone = await _read_request(receive)
            gone = gone or await _caller_leaves_within(receive, settings.latency_ms / 1000)
            receive = _replaying(body, receive)
            if gone:
                applied = settings.apply_when_caller_gone
                calls_abandoned.append(
                    {"method": scope["method"], "path": scope["path"], "applied": applied}
                )
                if not applied:
                    return
        if settings.down:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            raise SimulatedOutageError("simulated outage: connection dropped")
        if failing_call_number is not None:
            status_code = settings.status_code or 500
            detail = f"Simulated fault of call {failing_call_number}: HTTP {status_code}"
            response = JSONResponse({"status": "FAULT", "detail": detail}, status_code=status_code)
            await response(scope, receive, send)
            return
        if settings.status_code is not None and settings.fail_calls is None:
            detail = f"Simulated fault: HTTP {settings.status_code}"
            response = JSONResponse(
                {"status": "FAULT", "detail": detail}, status_code=settings.status_code
            )
            await response(scope, receive, send)
            return
        if (
            settings.error_rate
            and (settings.error_rate_path is None or scope["path"] == settings.error_rate_path)
            and self.injector.rng.random() < settings.error_rate
        ):
            response = JSONResponse(
                {"status": "FAULT", "detail": "Simulated random failure"}, status_code=500
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_faults(
    app: FastAPI, prefix: str = SIM_PREFIX, seed: int | None = None
) -> FaultInjector:
    """Adds the fault middleware, ``GET``/``PUT``/``DELETE {prefix}/faults`` and
    ``GET {prefix}/faults/abandoned`` to ``app``."""
    injector = FaultInjector(seed)
    app.state.faults = injector
    # uvicorn logs every exception that escapes the app; a simulated outage is not news.
    uvicorn_error_log = logging.getLogger("uvicorn.error")
    if _OUTAGE_LOG_FILTER not in uvicorn_error_log.filters:
        uvicorn_error_log.addFilter(_OUTAGE_LOG_FILTER)

    def replace(settings: FaultSettings) -> None:
        injector.settings = settings

    add_setting_routes(
        app,
        f"{prefix}/faults",
        "faults",
        FaultSettings,
        read=lambda: injector.settings,
        replace=replace,
    )

    @app.get(
        f"{prefix}/faults/abandoned",
        tags=["simulator"],
        description=(
            "The calls whose caller had gone when their latency ended, since the fault "
            "settings were last put: each with whether it was applied all the same."
        ),
    )
    async def read_calls_abandoned() -> list[dict[str, Any]]:
        return list(injector.calls_abandoned)

    app.add_middleware(FaultMiddleware, injector=injector, prefix=prefix)
    return injector


class BasicAuthMiddleware:
    """Answers 401 to every HTTP request outside the admin prefix that lacks the credential."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str], prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        user, password = credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.expected = f"Basic {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_admin_path(scope["path"], self.prefix):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"")
        if secrets.compare_digest(authorization, self.expected):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"status": "ERROR", "detail": "Missing or wrong credential"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="simulator"'},
        )
        await response(scope, receive, send)


def install_basic_auth(
    app: FastAPI, credentials: tuple[str, str], prefix: str = SIM_PREFIX
) -> None:
    app.add_middleware(BasicAuthMiddleware, credentials=credentials, prefix=prefix)
