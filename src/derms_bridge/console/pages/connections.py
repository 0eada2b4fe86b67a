"""The connections and file stores, each checked as the page is asked for."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, render
from derms_bridge.engine.connectivity import endpoints_of, probe_all

router = APIRouter(dependencies=CSRF_CHECKED)


@router.get("/connections", response_class=HTMLResponse)
async def connections(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    checks = await probe_all(endpoints_of(state.hub.settings), state.hub.stores)
    return render(request, "connections.html", {"checks": checks, "redact": state.redact})
