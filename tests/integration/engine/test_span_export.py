"""A collector that is slow, busy or down costs spans, never the hub: what cannot wait or
cannot go is dropped and counted in /metrics, by why."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from derms_bridge import metrics, tracing
from derms_bridge.settings.tracing import Tracing
from derms_bridge.tracing_export import BATCH_SIZE

pytestmark = pytest.mark.asyncio


class BusyCollector(ThreadingHTTPServer):
    """Holds the first export until `release` is set, then answers every export with 503,
    as a collector that is overloaded does."""

    def __init__(self) -> None:
        self.first_export = threading.Event()
        self.release = threading.Event()
        self.exports = 0
        super().__init__(("127.0.0.1", 0), _Busy)


class _Busy(BaseHTTPRequestHandler):
    server: BusyCollector

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.exports += 1
        if not self.server.first_export.is_set():
            self.server.first_export.set()
            self.server.release.wait(10)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the metrics."""


@pytest.fixture
def busy_collector() -> Iterator[BusyCollector]:
    server = BusyCollector()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def dropped(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "derms_bridge_spans_dropped_total", {"reason": reason}
    )
    assert value is not None, "the counter is there from the start"
    return value


def make_spans(count: int) -> None:
    for index in range(count):
        with tracing.span("segment", attributes={"derms_bridge.segment": index}):
            pass


async def test_spans_a_busy_collector_cannot_take_are_dropped_and_counted_by_why(
    busy_collector: BusyCollector,
) -> None:
    queue_full, export_failed = dropped(tracing.QUEUE_FULL), dropped(tracing.EXPORT_FAILED)
    host, port = busy_collector.server_address[:2]
    tracing.start_exporting(
        Tracing(
            endpoint=f"http://{host!s}:{port}/v1/traces",
            timeout=1,
            max_queued_spans=BATCH_SIZE,
            batch_delay_seconds=30,
        ),
        process="test",
        dropped=metrics.spans_dropped,
    )
    try:
        make_spans(BATCH_SIZE)
        # A full batch goes at once, without waiting for the batch delay.
        assert await asyncio.to_thread(busy_collector.first_export.wait, 5)
        make_spans(BATCH_SIZE + 100)
        assert dropped(tracing.QUEUE_FULL) - queue_full == 100
    finally:
        busy_collector.release.set()
        await tracing.stop_exporting()

    # The held export and the next were refused (503, or no answer in time) until the
    # timeout: both batches are counted, once each, whatever the number of tries.
    for _ in range(50):
        if dropped(tracing.EXPORT_FAILED) - export_failed == 2 * BATCH_SIZE:
            break
        await asyncio.sleep(0.1)
    assert dropped(tracing.EXPORT_FAILED) - export_failed == 2 * BATCH_SIZE
    assert busy_collector.exports >= 3
    assert not tracing.is_exporting()
