"""The hub's web application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from derms_bridge import __version__
from derms_bridge.api.problems import install_problem_handlers
from derms_bridge.api.routes import health, ops, triggers
from derms_bridge.bootstrap import Hub


def create_app(hub: Hub) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await hub.aclose()

    app = FastAPI(
        title="derms-bridge",
        version=__version__,
        summary="Integration hub between Oracle Utilities CPMCS and Edge DERMS",
        lifespan=lifespan,
    )
    app.state.engine = hub.engine
    app.state.authenticator = hub.authenticator
    app.state.max_json_body_bytes = hub.settings.limits.max_json_body_bytes
    install_problem_handlers(app)
    app.include_router(triggers.derms_router)
    app.include_router(triggers.cpmcs_router)
    app.include_router(ops.router)
    app.include_router(health.router)
    return app
