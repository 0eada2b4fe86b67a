"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from derms_bridge.api.deps import HubDep
from derms_bridge.errors import DatabaseUnavailable

router = APIRouter(tags=["Health"])


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str = Field(description="ok, or why the database does not answer or take writes")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready: the database is out"}},
)
async def readyz(hub: HubDep) -> Any:
    """The database answers, and takes writes: during an outage this writes once more, so
    that the hub is ready again as soon as the database is."""
    try:
        await hub.store.ping()
        if hub.database_outage.active:
            await hub.liveness.beat()
    except DatabaseUnavailable as refused:
        return JSONResponse({"status": "unavailable", "database": str(refused)}, status_code=503)
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    return {"status": "ready", "database": "ok"}
