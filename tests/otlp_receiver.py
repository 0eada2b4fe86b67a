"""An OTLP/HTTP traces receiver on loopback, as a collector is to the hub: it decodes each
ExportTraceServiceRequest the hub posts and keeps its spans and the request's headers. And a
recording proxy, in front of a simulator, that keeps the `traceparent` of each request the
hub sends it."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from derms_bridge.sandbox.servers import ServerThread

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    #: The parent's span id, None for a root.
    parent_id: str | None
    #: SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3, INTERNAL = 1.
    kind: int
    attributes: dict[str, Any]
    #: (trace id, span id) of each span it links to.
    links: list[tuple[str, str]]
    event_names: list[str]
    #: STATUS_CODE_ERROR = 2.
    status: int
    service: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """Serves POST /v1/traces on 127.0.0.1 while it runs."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])
        self._server = ServerThread(app, name="otlp-receiver")

    @property
    def endpoint(self) -> str:
        return f"{self._server.url}/v1/traces"

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if request.headers.get("content-type") != PROTOBUF:
            return Response(status_code=415)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=[
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ],
                            event_names=[event.name for event in span.events],
                            status=span.status.code,
                            service=str(resource.get("service.name")),
                        )
                    )
        with self._lock:
            self.spans += received
            self.headers.append(dict(request.headers))
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)


class RecordingProxy:
    """Passes every request on to `target` and keeps, per path, the `traceparent` it came
    with (None when it had none)."""

    def __init__(self, target: str) -> None:
        self.traceparents: list[tuple[str, str | None]] = []
        self._target = target
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._forward,
                    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                )
            ]
        )
        self._server = ServerThread(app, name="recording-proxy")

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> RecordingProxy:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()

    async def _forward(self, request: Request) -> Response:
        self.traceparents.append((request.url.path, request.headers.get("traceparent")))
        passed = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type", "accept", "traceparent")
        }
        async with httpx.AsyncClient(base_url=self._target) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers=passed,
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )
