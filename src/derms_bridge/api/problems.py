"""RFC 9457 problem details for every error the hub answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from derms_bridge.engine.database_outage import RETRY_AFTER_SECONDS
from derms_bridge.errors import DatabaseUnavailable
from derms_bridge.schemas.problems import PROBLEM_JSON, field_path, problem_body


def problem(
    status: int,
    detail: str,
    *,
    instance_id: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(status, detail, instance_id=instance_id)
    if errors is not None:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            message = f"malformed JSON: {error.get('ctx', {}).get('error', error['msg'])}"
            errors.append({"field": "body", "message": message})
            continue
        errors.append({"field": field_path(error["loc"]), "message": error["msg"]})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
    return problem(422, summary, errors=errors)


def _http_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def _unexpected_problem(_request: Request, _exc: Exception) -> JSONResponse:
    return problem(500, "the hub met an unexpected error; it is in the hub's log")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    request.app.state.hub.database_outage.refused(exc)
    return problem(
        503,
        "the hub's database refuses writes for now; nothing of this request was kept: "
        "send it again later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(Exception, _unexpected_problem)
