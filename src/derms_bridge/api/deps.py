"""What a route can ask for in its signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBearer

from derms_bridge.bootstrap import Hub
from derms_bridge.credentials import Principal


class _DocumentedBasic(HTTPBasic):
    """HTTP Basic as the OpenAPI document shows it, read by no request: the route class
    (api/guard.py) checks the credential before the body is read."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class _DocumentedBearer(HTTPBearer):
    """A bearer token as the OpenAPI document shows it; checked as HTTP Basic is."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


DOCUMENTED_AUTH = [
    Depends(_DocumentedBasic(scheme_name="HTTPBasic", auto_error=False)),
    Depends(_DocumentedBearer(scheme_name="HTTPBearer", auto_error=False)),
]


# Coroutines, as they wait for nothing: FastAPI runs a plain function in a thread.
async def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


HubDep = Annotated[Hub, Depends(_hub)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
