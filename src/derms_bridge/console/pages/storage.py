"""Storage: the database's size and what holds it, and the retention in force."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from derms_bridge.catalog import BY_KEY
from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, render
from derms_bridge.settings.retention import OUTCOME_STATUSES, Keep, Outcome, Retention

router = APIRouter(dependencies=CSRF_CHECKED)


def retention_in_force(retention: Retention) -> list[tuple[str, dict[Outcome, Keep]]]:
    """The days in force: every flow without its own, then each flow that has some."""
    default: dict[Outcome, Keep] = {o: getattr(retention.default, o) for o in OUTCOME_STATUSES}
    rows = [("every other flow", default)]
    for flow in retention.flows:
        info = BY_KEY[flow]
        label = f"{info.number} {info.title} ({flow})"
        rows.append((label, {o: retention.keep(flow, o) for o in OUTCOME_STATUSES}))
    return rows


@router.get("/storage", response_class=HTMLResponse)
async def storage(request: Request, state: StateDep, operator: OperatorDep) -> Response:
    return render(
        request,
        "storage.html",
        {
            "storage": await state.hub.storage.report(),
            "retention": retention_in_force(state.hub.settings.retention),
            "purge_schedule": state.hub.settings.retention.schedule,
        },
    )
