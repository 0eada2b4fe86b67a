"""The hub's web application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from derms_bridge import __version__
from derms_bridge.api.openapi import install_openapi
from derms_bridge.api.plain_triggers import PlainTriggers
from derms_bridge.api.problems import install_problem_handlers
from derms_bridge.api.routes import (
    file_triggers,
    health,
    metrics,
    ops,
    schedules,
    transfer_triggers,
    triggers,
)
from derms_bridge.api.traced_requests import TracedRequests
from derms_bridge.bootstrap import Hub, freeze_startup_objects
from derms_bridge.console.app import create_console


def create_app(hub: Hub, *, run_workers: bool = True) -> PlainTriggers:
    """The API; with `run_workers` this process also sends the files' segments and runs
    the schedules."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start(run_workers=run_workers)
        freeze_startup_objects()
        yield
        # Begun already at the server's signal (http_server.HubServer); the workers had
        # their grace while the server's requests ended.
        await hub.stop()

    app = FastAPI(
        title="derms-bridge",
        version=__version__,
        summary="Integration hub between Oracle Utilities CPMCS and Edge DERMS",
        lifespan=lifespan,
        # The hub traces its requests itself (traced_requests.py); FastAPI's own telemetry
        # would only look for an OpenTelemetry provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.engine = hub.engine
    app.state.hub = hub
    app.state.authenticator = hub.authenticator
    app.state.login_throttle = hub.login_throttle
    app.state.max_json_body_bytes = hub.settings.limits.max_json_body_bytes
    app.state.max_file_bytes = hub.settings.segments.max_file_bytes
    app.state.rejected_body_bytes = hub.settings.limits.rejected_body_bytes
    install_problem_handlers(app)
    install_openapi(app)
    app.add_middleware(TracedRequests)
    app.include_router(triggers.derms_router)
    app.include_router(triggers.cpmcs_router)
    app.include_router(file_triggers.router)
    app.include_router(transfer_triggers.router)
    app.include_router(ops.router)
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.mount("/console", create_console(hub))
    trigger_routes = [
        route
        for router in (triggers.derms_router, triggers.cpmcs_router)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    return PlainTriggers(app, trigger_routes)
