"""A stand-in CPMCS that refuses every call with a business error in CPMCS's own shape.

The CPMCS simulator refuses an acknowledgement or a device status only when it lacks
its id, which the hub never sends, and its injected faults answer a body that is not
CPMCS's error shape (a technical fault). This stand-in lets a flow test see a real
business error come over the wire and through the connector's sorting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.cpmcs_sim import cpmcs_error
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import empty_tables, hub_settings

#: What the stand-in answers every call with.
REFUSAL_NUMBER = 10030
REFUSAL_MESSAGE = "Sync request is not awaiting an acknowledgement"


def create_refusing_cpmcs_app() -> FastAPI:
    app = FastAPI(title="CPMCS that refuses everything")

    @app.post("/{path:path}")
    async def refuse(path: str) -> JSONResponse:
        return cpmcs_error(400, "ERROR", REFUSAL_NUMBER, REFUSAL_MESSAGE)

    return app


@asynccontextmanager
async def hub_against(
    cpmcs_url: str,
    *,
    database_url: str,
    derms_url: str,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    lookups: Lookups,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a hub on an empty database whose CPMCS connection goes to `cpmcs_url`."""
    empty_tables(database_url)
    built = build_hub(hub_settings(database_url, cpmcs_url, derms_url, mailbox, callers), lookups)
    try:
        transport = httpx.ASGITransport(app=create_app(built))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hub.test", timeout=30
        ) as client:
            yield client
    finally:
        await built.aclose()
