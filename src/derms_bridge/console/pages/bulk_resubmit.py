"""Bulk resubmit: the failures a filter selects, confirmed, then run again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from derms_bridge.console.pages.filters import InstanceQuery
from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, render
from derms_bridge.engine.bulk_resubmit import resubmit_many

router = APIRouter(dependencies=CSRF_CHECKED)

#: The most one bulk resubmit runs; a larger selection is worked through in several.
BULK_LIMIT = 200


@router.get("/bulk-resubmit", response_class=HTMLResponse)
async def bulk_confirm(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(request.query_params)
    found = await state.hub.operations.failures_to_resubmit(
        query.instance_filter(), limit=BULK_LIMIT
    )
    return render(
        request,
        "bulk_confirm.html",
        {"query": query, "count": len(found.ids), "found": found, "limit": BULK_LIMIT},
    )


@router.post("/bulk-resubmit", response_class=HTMLResponse)
async def bulk_run(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    query = InstanceQuery.of(await request.form())
    found = await state.hub.operations.failures_to_resubmit(
        query.instance_filter(), limit=BULK_LIMIT
    )
    outcome = await resubmit_many(state.hub.engine, found.ids, caller=operator)
    return render(
        request,
        "bulk_result.html",
        {
            "query": query,
            "outcome": outcome,
            "count": len(found.ids),
            "left": found.total - len(found.ids),
            "left_exact": found.total_exact,
            "refused": [state.redact(reason) for reason in outcome.refused],
        },
    )
