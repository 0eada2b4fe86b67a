"""What a route can ask for in its signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBearer

from derms_bridge.bootstrap import Hub
from derms_bridge.credentials import Principal
from derms_bridge.engine.runner import FlowEngine

# Declared so that the OpenAPI document shows how to authenticate; the route
# class (api/guard.py) does the checking before the body is read.
basic_scheme = HTTPBasic(auto_error=False)
bearer_scheme = HTTPBearer(auto_error=False)
DOCUMENTED_AUTH = [Depends(basic_scheme), Depends(bearer_scheme)]


# Coroutines, as they wait for nothing: FastAPI runs a plain function in a thread.
async def _engine(request: Request) -> FlowEngine:
    engine: FlowEngine = request.app.state.engine
    return engine


async def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


EngineDep = Annotated[FlowEngine, Depends(_engine)]
HubDep = Annotated[Hub, Depends(_hub)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
