"""The hub's OpenAPI document, as FastAPI makes it from the routes, with every error answer
described as what the hub sends: an RFC 9457 problem document (api/problems.py), never
FastAPI's own validation error."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from derms_bridge.schemas.problems import PROBLEM_JSON, Problem

_COMPONENTS = "#/components/schemas/"
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": _COMPONENTS + "Problem"}}}


def _is_problem(status: str, answer: dict[str, Any]) -> bool:
    """An error answer that the route did not describe otherwise (/readyz's 503 is its own)."""
    if not status[:1].isdigit() or int(status) < 400:
        return False
    content = answer.get("content")
    if not content:
        return True
    reference: str | None = content.get("application/json", {}).get("schema", {}).get("$ref")
    return reference == _COMPONENTS + "HTTPValidationError"


def _errors_as_problems(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=_COMPONENTS + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, answer in operation.get("responses", {}).items():
                if _is_problem(status, answer):
                    answer["content"] = _PROBLEM_CONTENT
    for name in _FASTAPI_ERRORS:
        schemas.pop(name, None)


def install_openapi(app: FastAPI) -> None:
    """Serve the document made as above, once, at /openapi.json."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            made = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            _errors_as_problems(made)
            app.openapi_schema = made
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
