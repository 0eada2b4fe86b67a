"""The instances list, filtered and paged."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from derms_bridge.catalog import FLOWS
from derms_bridge.console.pages.filters import PAGE_SIZE, InstanceQuery
from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, is_htmx, render
from derms_bridge.schemas.ops import INSTANCE_STATUSES, WINDOWS

router = APIRouter(dependencies=CSRF_CHECKED)


@router.get("/instances", response_class=HTMLResponse)
async def instances(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(request.query_params)
    found = await state.hub.operations.search(query.instance_filter())
    pages = max(1, -(-found.total // PAGE_SIZE))
    context = {
        "query": query,
        "found": found,
        "pages": pages,
        "flows": FLOWS,
        "statuses": INSTANCE_STATUSES,
        "windows": list(WINDOWS),
    }
    # htmx asks for the results only when the filters change; going back in the browser's
    # history it asks for the whole page again.
    fragment = is_htmx(request) and "HX-History-Restore-Request" not in request.headers
    response = render(request, "_instance_results.html" if fragment else "instances.html", context)
    response.headers["Vary"] = "HX-Request"
    return response
