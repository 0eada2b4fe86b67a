"""Each request the hub serves is a span, the first instance it brings (tracing.py): a
caller's W3C `traceparent` is continued. The scrape of /metrics and the health checks
are left out: they come every few seconds and bring no instance."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from derms_bridge import tracing

#: Paths that are never traced.
UNTRACED = ("/metrics", "/healthz", "/readyz")


def _answering(send: Send, span: tracing.Span, message: Message) -> Awaitable[None]:
    """A traced request's `send`, given `send` and `span` by `partial`: the response's status
    goes on the request's span. Not a coroutine of its own: what the sender awaits is the
    server's `send`, one coroutine fewer for each message of every response.

    A partial rather than a closure: two objects a request for the cyclic collector to count
    (the partial and its arguments) rather than four (the function, its two cells and their
    tuple), and its young collections come as often as the objects it counts grow
    (bench/README.md, 2026-12-05, lean4)."""
    if message["type"] == "http.response.start":
        tracing.answered(span, message["status"])
    return send(message)


class TracedRequests:
    """Pure ASGI, so that a request's body still streams through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNTRACED):
            await self._app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        if not headers and not tracing.is_exporting():
            # No trace to continue and none to record: a no-op span would change nothing,
            # and wrapping every request for it cost about 5% of a flow's CPU.
            await self._app(scope, receive, send)
            return
        method = scope["method"]
        attributes: dict[str, tracing.AttributeValue | None] = {
            "http.request.method": method,
            "url.path": scope["path"],
        }
        # A flow's trigger comes with its route already found (api/plain_triggers.py): its
        # span is named for it from the start. Any other request's route is known once the
        # app's routing has run.
        template = _template(scope)
        if template is not None:
            attributes["http.route"] = template
        span, token = tracing.start_request(
            f"{method} {template}" if template is not None else method,
            tracing.continued(headers),
            attributes,
        )
        try:
            await self._app(scope, receive, partial(_answering, send, span))
        except Exception as error:
            tracing.failed(span, type(error).__name__)
            raise
        finally:
            if template is None and (template := _template(scope)) is not None:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            tracing.end_request(span, token)


def _template(scope: Scope) -> str | None:
    """The path template of the route chosen for the request, once one is."""
    template = getattr(scope.get("route"), "path", None)
    return template if isinstance(template, str) else None
