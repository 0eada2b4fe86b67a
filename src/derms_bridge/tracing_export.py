"""The OpenTelemetry SDK's side of tracing (tracing.py): the provider that samples, batches
and exports the hub's spans over OTLP/HTTP. Imported only when the settings turn tracing
on, so that a hub without it never loads the SDK."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from derms_bridge.settings.tracing import Tracing


class _HashedOnce(Resource):
    """A Resource whose hash is worked out once. The SDK's hashes a resource by dumping its
    attributes to JSON, and its OTLP encoder hashes the resource of every span it encodes
    (about 9 us of the 50 it takes per span); a resource's attributes never change."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def exporting_provider(settings: Tracing, *, process: str) -> TracerProvider:
    """Spans sampled by trace (ParentBased: a caller's sampled flag decides for its trace,
    `sample_ratio` of the hub's own traces by their id), sent in batches from a thread of
    the SDK's."""
    provider = TracerProvider(
        sampler=ParentBasedTraceIdRatio(settings.sample_ratio),
        resource=_HashedOnce(
            Resource.create({"service.name": settings.service_name, "service.instance.id": process})
        ),
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=str(settings.endpoint),
                headers={
                    name: header.value.get_secret_value()
                    for name, header in settings.headers.items()
                },
                timeout=settings.timeout,
            ),
            schedule_delay_millis=settings.batch_delay_seconds * 1000,
        )
    )
    return provider
