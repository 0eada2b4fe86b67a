"""The export thread sends spans in full batches while they keep coming: spans that arrive
while a batch is being posted wait for the next full batch (or the batch delay, or the
stop), rather than go at once a few dozen at a time."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from derms_bridge.otlp_protobuf import ExportRequest, SpanData
from derms_bridge.tracing import EXPORT_FAILED
from derms_bridge.tracing_export import BATCH_SIZE, SpanBatches
from tests.unit.test_otlp_protobuf import RESOURCE, Span

#: Longer than the test: no export is sent for the batch delay.
NEVER = 3600.0


def encoded(span: SpanData) -> bytes:
    return b"span"


def test_spans_that_come_during_an_export_wait_for_a_full_batch_or_the_stop() -> None:
    #: Each export: how many spans it held, and whether the stop had begun.
    exports: list[tuple[int, bool]] = []
    first_sent = threading.Event()

    def export(spans: Sequence[bytes]) -> None:
        exports.append((len(spans), batches_stopping.is_set()))
        if len(exports) == 1:
            # Spans the hub ends while the first batch is on its way.
            for _ in range(100):
                batches.add(span)
            first_sent.set()

    batches_stopping = threading.Event()
    span = Span()
    batches = SpanBatches(encoded, export, delay=NEVER, most_waiting=10_000, dropped=None)
    for _ in range(BATCH_SIZE):
        batches.add(span)
    assert first_sent.wait(10)
    for _ in range(BATCH_SIZE):
        batches.add(span)
    batches_stopping.set()
    batches.shutdown(10)

    # The 100 went with the next full batch, the rest at the stop; none alone.
    assert [size for size, _ in exports] == [BATCH_SIZE, BATCH_SIZE, 100]
    assert exports[-1] == (100, True)


def test_a_span_that_cannot_be_encoded_is_dropped_and_counted_and_the_rest_go() -> None:
    exports: list[Sequence[bytes]] = []
    dropped: list[tuple[str, int]] = []
    request = ExportRequest(RESOURCE, scope="derms_bridge")
    batches = SpanBatches(
        request.span,
        exports.append,
        delay=NEVER,
        most_waiting=10_000,
        dropped=lambda why, count: dropped.append((why, count)),
    )
    batches.add(Span(name="span 0"))
    # A lone surrogate has no UTF-8: its name cannot be written.
    batches.add(Span(name="span \udc80"))
    batches.add(Span(name="span 2"))
    batches.shutdown(10)

    [export] = exports
    sent = ExportTraceServiceRequest()
    sent.ParseFromString(request.holding(export))
    assert [span.name for span in sent.resource_spans[0].scope_spans[0].spans] == [
        "span 0",
        "span 2",
    ]
    assert dropped == [(EXPORT_FAILED, 1)]
