"""Each request the hub serves is a span, the first instance it brings (tracing.py): a
caller's W3C `traceparent` is continued. The scrape of /metrics and the health checks
are left out: they come every few seconds and bring no instance."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from derms_bridge import tracing

#: Paths that are never traced.
UNTRACED = ("/metrics", "/healthz", "/readyz")


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
        with tracing.span(
            method,
            kind=tracing.SpanKind.SERVER,
            parent=tracing.continued(headers),
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:

            async def answered(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        tracing.failed(span, str(message["status"]))
                await send(message)

            try:
                with tracing.serving(span):
                    await self._app(scope, receive, answered)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None)
                if isinstance(template, str):
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
