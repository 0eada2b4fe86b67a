"""The routes a test uses to read and steer a simulator, beside the target's own: a setting
read, replaced and reset, and the simulator's state forgotten."""

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel

_Setting = TypeVar("_Setting", bound=BaseModel)


def add_setting_routes(
    app: FastAPI,
    path: str,
    name: str,
    model: type[_Setting],
    *,
    read: Callable[[], _Setting],
    replace: Callable[[_Setting], None],
) -> None:
    """GET, PUT and DELETE `path`: the setting `name` read, replaced, or put back to
    `model`'s defaults; each answers the setting then in force."""

    async def read_setting() -> Any:
        return read()

    async def replace_setting(setting: Any) -> Any:
        replace(setting)
        return read()

    async def reset_setting() -> Any:
        replace(model())
        return read()

    # FastAPI takes the body's model from the annotation, known here only when called.
    replace_setting.__annotations__["setting"] = model
    for verb, method, endpoint in (
        ("read", "GET", read_setting),
        ("replace", "PUT", replace_setting),
        ("reset", "DELETE", reset_setting),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            response_model=model,
            name=f"{verb}_{name}",
            tags=["simulator"],
        )


def add_reset_route(app: FastAPI, path: str, reset: Callable[[], None]) -> None:
    """DELETE `path`: everything the simulator kept, forgotten."""

    @app.delete(path, tags=["simulator"])
    async def reset_state() -> dict[str, str]:
        reset()
        return {"status": "RESET"}
