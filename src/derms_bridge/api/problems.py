"""RFC 9457 problem details for every error the hub answers."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from derms_bridge.api.refusals import keep_refused
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


#: The most field errors one problem lists; a last entry counts the rest.
ERRORS_LISTED = 100


async def refused(
    request: Request,
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
) -> JSONResponse:
    """The problem a trigger route answers a message it refuses; from the route's own
    caller the message is kept first, as a rejected instance the problem names."""
    instance_id = await keep_refused(request, status, detail, errors)
    headers = {"X-Instance-Id": instance_id} if instance_id is not None else None
    return problem(status, detail, instance_id=instance_id, errors=errors, headers=headers)


async def _validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    errors = []
    for error in found[:ERRORS_LISTED]:
        if error.get("type") == "json_invalid":
            message = f"malformed JSON: {error.get('ctx', {}).get('error', error['msg'])}"
            errors.append({"field": "body", "message": message})
            continue
        errors.append({"field": field_path(error["loc"]), "message": error["msg"]})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
    if len(found) > ERRORS_LISTED:
        errors.append({"field": "body", "message": f"and {len(found) - ERRORS_LISTED} more errors"})
    return await refused(request, 422, summary, errors=errors)


def _unreadable_json(cause: BaseException | None) -> str | None:
    """What made a JSON body unreadable, for the errors that json.loads raises besides a
    syntax error (FastAPI answers those 400, which the contract has not: they are 422)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"not UTF-8 (byte {cause.object[cause.start]:#04x} at position {cause.start})"
    if isinstance(cause, RecursionError):
        return "nested deeper than the hub reads"
    if isinstance(cause, ValueError):
        # Python refuses to read an integer of more than sys.get_int_max_str_digits() digits.
        return f"a number has more digits than the hub reads ({sys.get_int_max_str_digits()})"
    return None


async def refused_unreadable(request: Request, cause: BaseException) -> JSONResponse | None:
    """The 422 for a JSON body json.loads could not read for `cause`; None when `cause` is
    no such reason."""
    if (unreadable := _unreadable_json(cause)) is None:
        return None
    message = f"malformed JSON: {unreadable}"
    return await refused(request, 422, message, errors=[{"field": "body", "message": message}])


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and (
        answer := await refused_unreadable(request, exc.__cause__ or exc)
    ):
        return answer
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
