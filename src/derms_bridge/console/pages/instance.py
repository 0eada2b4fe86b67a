"""An instance: its payload, reply, activities and error, a file's rows set aside to
download, resubmitting it, and sending a file run's acknowledgement again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from derms_bridge.catalog import BY_KEY
from derms_bridge.console.charts import FILE_AT_WORK, duration_text, file_pace, rate_text
from derms_bridge.console.web import CSRF_CHECKED, OperatorDep, StateDep, render
from derms_bridge.engine.operations import NoAcknowledgementToSend
from derms_bridge.engine.redaction import Redactor, mask_secret_fields
from derms_bridge.engine.runner import InstanceNotFound, NotResubmittable

router = APIRouter(dependencies=CSRF_CHECKED)


def _shown(value: Any, redact: Redactor) -> str:
    """A payload as an operator may read it: fields named like secrets masked, then any
    configured secret masked wherever it appears."""
    if value is None:
        return ""
    return redact(json.dumps(mask_secret_fields(value), indent=2, ensure_ascii=False))


@router.get("/instances/{instance_id}", response_class=HTMLResponse)
async def instance(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    detail = await state.hub.operations.detail(instance_id)
    if detail is None:
        return render(
            request, "not_found.html", {"what": f"instance {instance_id}"}, status_code=404
        )
    info = BY_KEY.get(detail.flow)
    pace = None
    if detail.file is not None:
        pace = file_pace(
            detail.file.segments,
            detail.file.rows_sent,
            detail.file.total_rows,
            detail.received_at,
            max((a.at for a in detail.activities), default=None),
            datetime.now(UTC) if detail.file.state in FILE_AT_WORK else None,
        )
    return render(
        request,
        "instance.html",
        {
            "instance": detail,
            "info": info,
            "pace": pace,
            "file_at_work": FILE_AT_WORK,
            "duration_text": duration_text,
            "rate_text": rate_text,
            "payload": _shown(detail.payload, state.redact),
            "reply": _shown(detail.reply, state.redact),
            "error": state.redact(detail.error) if detail.error else None,
            "received_body": (
                state.redact(detail.payload["receivedBody"])
                if detail.status == "rejected" and detail.payload_purged_at is None
                else None
            ),
            "redact": state.redact,
        },
    )


@router.get("/instances/{instance_id}/set-aside.csv")
async def set_aside_rows(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    """A file's rows set aside, as the ops API's set-aside.csv gives them."""
    rows = await state.hub.operations.set_aside_csv(instance_id)
    if rows is None:
        return render(
            request, "not_found.html", {"what": f"file of instance {instance_id}"}, status_code=404
        )
    return StreamingResponse(
        rows,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{instance_id}-set-aside.csv"'},
    )


@router.post("/instances/{instance_id}/resubmit", response_class=HTMLResponse)
async def resubmit(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    try:
        outcome = await state.hub.engine.resubmit(instance_id, caller=operator)
    except InstanceNotFound as exc:
        return render(request, "_resubmitted.html", {"refused": str(exc)}, status_code=404)
    except NotResubmittable as exc:
        return render(request, "_resubmitted.html", {"refused": str(exc)}, status_code=409)
    new = await state.hub.operations.detail(outcome.instance_id)
    return render(
        request,
        "_resubmitted.html",
        {
            "new": new,
            "same_instance": outcome.instance_id == instance_id,
            "error": state.redact(outcome.error) if outcome.error else None,
        },
    )


@router.post("/instances/{instance_id}/acknowledgement", response_class=HTMLResponse)
async def acknowledge_again(
    request: Request, instance_id: str, state: StateDep, operator: OperatorDep
) -> Response:
    """A finished file run's acknowledgement to DERMS again, as the ops API's."""
    try:
        await state.hub.operations.acknowledge_again(instance_id)
    except InstanceNotFound as exc:
        return render(request, "_acknowledged_again.html", {"refused": str(exc)}, status_code=404)
    except NoAcknowledgementToSend as exc:
        return render(request, "_acknowledged_again.html", {"refused": str(exc)}, status_code=409)
    return render(request, "_acknowledged_again.html", {"instance_id": instance_id})
