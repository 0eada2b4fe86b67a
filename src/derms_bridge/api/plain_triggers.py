"""A plainer way in for the flows' trigger routes: a POST to one goes straight to its
guarded handler, through only the layers of the app that act on it.

Every request to the FastAPI app passes ten layers before its route's handler (FastAPI's
telemetry and body limit, the exception middleware, exit stacks, the routing, which tries
the routes in turn, and the route's own wrappers); a flow's trigger needs four of them:
the answer to an unexpected error (ServerErrorMiddleware, with the app's handler), the
app's own middleware (TracedRequests), its exception handlers (the problem+json answers)
and FastAPI's exit stacks, which its handler asserts. Skipping the others cut the hub's
CPU per flow by about 13% (bench/README.md, issue 15's fifth profile). What the skipped
layers do is done here for these routes, or is nothing for them:

* the routing: a trigger route's path is its own, and the trigger routers are included
  first, so a POST to that path is the route the router would have chosen; any other
  method, path or scope goes to the app, as before;
* the scope the routing and the app fill in (the app, the router, the route, its
  endpoint and path parameters) is set here, and the route is then run as the router runs
  it (`route.handle`: FastAPI's own wrapper, with its exit stacks and its exceptions
  answered by the app's handlers), so that nothing of FastAPI's internals is copied here;
* FastAPI's telemetry is off in this app (api/app.py), and its body limit is unset: the
  guard applies the hub's.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import APIRoute
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class PlainTriggers:
    """The hub's ASGI application: `app`, with the POSTs to `routes` taken the plain way."""

    def __init__(self, app: FastAPI, routes: list[APIRoute]) -> None:
        self.app = app
        self._routes = {route.path: route for route in routes}
        self._layers: ASGIApp | None = None

    def _built_layers(self) -> ASGIApp:
        # Built at the first request, as the app builds its own stack: from the exception
        # handlers and middleware it has by then, in the app's order.
        handlers: dict[Any, Any] = {}
        unexpected = None
        for key, handler in self.app.exception_handlers.items():
            if key in (500, Exception):
                unexpected = handler
            else:
                handlers[key] = handler
        layers: ASGIApp = ExceptionMiddleware(
            AsyncExitStackMiddleware(self._trigger), handlers=handlers, debug=self.app.debug
        )
        for middleware in reversed(self.app.user_middleware):
            factory, args, kwargs = middleware
            layers = factory(layers, *args, **kwargs)
        return ServerErrorMiddleware(layers, handler=unexpected, debug=self.app.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        if self._layers is None:
            self._layers = self._built_layers()
        scope["app"] = self.app
        scope["router"] = self.app.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        await self._layers(scope, receive, send)

    async def _trigger(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["route"].handle(scope, receive, send)
