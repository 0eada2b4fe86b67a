"""The exporting side of tracing (tracing.py): a tracer that samples the hub's traces and
records their spans, and a thread that sends the finished ones in batches over OTLP/HTTP.
Imported only when the settings turn tracing on.

It is the hub's own rather than the OpenTelemetry SDK's, for its cost: the SDK's provider,
span and exporter took about 150 us of CPU per synchronous message, 12-29% of what the
whole flow costs (bench/README.md, trace_cost.py and span_cost.py). The hub's spans need
none of what makes the SDK's dear: no span processors or limits to consult, attributes of
the hub's own choosing (scalars), no events. What it keeps of OpenTelemetry is the API:
these spans are the API's `Span` (tracing.Span: their ids plain numbers, their SpanContext
made when asked for), so whatever reads a Span reads them as the SDK's (an outbound call's,
never the current span, is a RecordedCall instead: tracing.OutboundCall says why), and the
sampling rule is the SDK's, ParentBased over TraceIdRatioBased, so every process and the
SDK decide alike for the same trace id. Which span is running is tracing.py's to keep, not
the API's Context.
"""

from __future__ import annotations

import http.client
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from urllib.parse import urlsplit

import stamina
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util import types

from derms_bridge import __version__
from derms_bridge.otlp_protobuf import AttributeValue, ExportRequest, SpanData
from derms_bridge.settings.tracing import Tracing
from derms_bridge.tracing import (
    EXPORT_FAILED,
    QUEUE_FULL,
    SAMPLED,
    Dropped,
    OutboundCall,
    Span,
    TraceRef,
    Unrecorded,
    linked,
)

log = logging.getLogger(__name__)

#: Spans per export, as the SDK's batch processor sends them.
BATCH_SIZE = 512
#: Spans the export thread encodes before it lets the GIL go: about 0.85 ms of work.
ENCODED_AT_ONCE = 256
#: A connection idle this long is closed before the next export: servers close theirs
#: after a few seconds of quiet (uvicorn's default is 5 s, the batch delay's too), and an
#: export on one they closed would fail and be tried again for nothing.
IDLE_CONNECTION_SECONDS = 4.0
#: Answers a collector gives when it may take the same export a moment later.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_LOW_64_BITS = 2**64 - 1
#: The attribute values a span keeps (the API allows sequences too; the hub sets none).
_SCALARS = (str, bool, int, float)
#: Attributes whose every value is one span's own: an instance's id, and the id of the
#: instance it resubmits (engine/run_context.py). The encoder writes them each time and
#: remembers the rest of a span's attributes as one block.
ONE_OFF_ATTRIBUTES = ("derms_bridge.instance_id", "derms_bridge.resubmit_of")


class RecordedSpan(Span):
    """A sampled span of the hub's, its fields as the OTLP encoder reads them. It holds
    scalar attributes and never an event: an event, an exception's above all, would carry
    text that may quote a payload (docs/tracing.md)."""

    # What most spans keep as they are, read from the class until a span sets its own:
    # every request makes one, and each store in its `__init__` is CPU on the event loop.
    records = True
    flags = SAMPLED
    is_remote = False
    parent_span_id: int | None = None
    parent_is_remote = False
    end_unix_nano = 0
    status_code = StatusCode.UNSET._value_
    status_message = ""
    trace_state = ""
    links: Sequence[SpanContext] = ()

    def __init__(
        self,
        batches: SpanBatches,
        trace_id: int,
        span_id: int,
        parent: Span,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue | None],
        links: Sequence[SpanContext],
    ) -> None:
        self._batches = batches
        self.trace_id = trace_id
        self.span_id = span_id
        if parent.trace_id:
            self.parent_span_id = parent.span_id
            self.parent_is_remote = parent.is_remote
            if parent.trace_state:
                self.trace_state = parent.trace_state
        self.name = name
        # `_value_`, not `value`: the property costs about 1 us a span.
        self.kind = kind._value_ + 1
        self.start_unix_nano = time.time_ns()
        self.attributes = attributes
        if links:
            self.links = links

    def end(self, end_time: int | None = None) -> None:
        if self.end_unix_nano:
            return
        self.end_unix_nano = end_time or time.time_ns()
        self._batches.add(self)

    def is_recording(self) -> bool:
        return not self.end_unix_nano

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if not self.end_unix_nano:
            kept = self.attributes
            for key, value in attributes.items():
                if isinstance(value, _SCALARS):
                    kept[key] = value

    def keep_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        if not self.end_unix_nano:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if not self.end_unix_nano and isinstance(value, _SCALARS):
            self.attributes[key] = value

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not self.end_unix_nano and context.is_valid:
            self.links = [*self.links, context]

    def update_name(self, name: str) -> None:
        if not self.end_unix_nano:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_unix_nano:
            return
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        self.status_code = code._value_
        # As the SDK: a description goes with an error only.
        self.status_message = (description or "") if code is StatusCode.ERROR else ""

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Not kept (the class's docstring says why)."""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Not kept: an exception's text may quote a payload; tracing.failed marks a span
        failed by the exception's type."""


class RecordedCall(OutboundCall):
    """A sampled outbound call's span, its fields as the OTLP encoder reads them: made from
    its ids and times, never a Span (tracing.OutboundCall says why)."""

    __slots__ = (
        "_batches",
        "attributes",
        "end_unix_nano",
        "name",
        "parent_is_remote",
        "parent_span_id",
        "span_id",
        "start_unix_nano",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )
    #: OTLP's SpanKind for a client.
    kind = SpanKind.CLIENT._value_ + 1
    links: Sequence[SpanContext] = ()

    def __init__(
        self,
        headers: Mapping[str, str],
        batches: SpanBatches,
        trace_id: int,
        span_id: int,
        parent: Span,
        name: str,
        attributes: dict[str, AttributeValue],
    ) -> None:
        # OutboundCall's own field, set here rather than through its `__init__`: every
        # outbound call makes one.
        self.headers = headers
        self._batches = batches
        self.trace_id = trace_id
        self.span_id = span_id
        if parent.trace_id:
            self.parent_span_id: int | None = parent.span_id
            self.parent_is_remote = parent.is_remote
        else:
            self.parent_span_id = None
            self.parent_is_remote = False
        self.trace_state = parent.trace_state
        self.name = name
        self.attributes = attributes
        self.status_code = StatusCode.UNSET._value_
        self.status_message = ""
        self.start_unix_nano = time.time_ns()
        self.end_unix_nano = 0

    def answered(self, status: int | None, error_type: str | None) -> None:
        if status is not None:
            self.attributes["http.response.status_code"] = status
        if error_type is not None:
            self._failed(error_type)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception):
            self._failed(type(error).__name__)
        self.end_unix_nano = time.time_ns()
        self._batches.add(self)

    def _failed(self, error_type: str) -> None:
        """As tracing.failed marks a span: by the kind of error only."""
        self.attributes["error.type"] = error_type
        self.status_code = StatusCode.ERROR._value_
        self.status_message = error_type


def _span_id() -> int:
    """A span id, never the invalid 0 (the SDK's RandomIdGenerator's way)."""
    while True:
        found = random.getrandbits(64)
        if found:
            return found


def _trace_id() -> int:
    """A new trace's id: the time in milliseconds in its first 48 bits, 80 random bits after
    it. The instance keeps its trace id in an index (instances.trace_id), where random ids
    land on random pages, each insert a page more for the commit to write: ids that grow
    with time are written where the last ones were, as a UUIDv7's are (8-9 us of CPU less
    per instance on SQLite, bench/trace_id_index.py). The low 64 bits, which decide the
    sampling, stay random; W3C Trace Context asks randomness of the right-most 7 bytes
    only."""
    return (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)


class ExportingTracer:
    """Starts the hub's spans: sampled ones are recorded and exported when they end; one
    not sampled records nothing (tracing.Unrecorded) and still carries its trace id to the
    logs and to every outbound call's traceparent."""

    def __init__(self, settings: Tracing, *, process: str, dropped: Dropped | None) -> None:
        # TraceIdRatioBased's rule: the trace id's low 64 bits below the ratio's share.
        self._bound = round(settings.sample_ratio * 2**64)
        request = ExportRequest(
            {
                "service.name": settings.service_name,
                "service.instance.id": process,
                "service.version": __version__,
                "telemetry.sdk.language": "python",
            },
            scope="derms_bridge",
            one_off=ONE_OFF_ATTRIBUTES,
        )
        collector = OtlpHttpCollector(
            str(settings.endpoint),
            {name: header.value.get_secret_value() for name, header in settings.headers.items()},
            settings.timeout,
        )

        def export(spans: Sequence[bytes]) -> None:
            if not collector.post(request.holding(spans)) and dropped is not None:
                dropped(EXPORT_FAILED, len(spans))

        self._batches = SpanBatches(
            request.span,
            export,
            delay=settings.batch_delay_seconds,
            most_waiting=settings.max_queued_spans,
            dropped=dropped,
        )
        self._timeout = settings.timeout

    def _root(self) -> tuple[int, bool]:
        """A new trace's id, and whether it is sampled: TraceIdRatioBased's rule, its low 64
        bits below the ratio's share."""
        trace_id = _trace_id()
        return trace_id, (trace_id & _LOW_64_BITS) < self._bound

    def outbound(
        self, name: str, parent: Span, attributes: dict[str, AttributeValue]
    ) -> OutboundCall:
        """An outbound call's span under `parent`: recorded when its trace is sampled."""
        if parent.trace_id:
            trace_id, sampled = parent.trace_id, parent.flags & SAMPLED
        else:
            trace_id, sampled = self._root()
        # Drawn here, where a call of _span_id costs a third of the draw: 0 comes once in
        # 2**64 draws.
        span_id = random.getrandbits(64) or _span_id()
        # The ids' bytes in hex (tracing.ref_of says why).
        headers = {
            "traceparent": (
                f"00-{trace_id.to_bytes(16).hex()}-{span_id.to_bytes(8).hex()}"
                f"-{'01' if sampled else '00'}"
            )
        }
        if parent.trace_state:
            headers["tracestate"] = parent.trace_state
        if not sampled:
            return OutboundCall(headers)
        return RecordedCall(headers, self._batches, trace_id, span_id, parent, name, attributes)

    def start_span(
        self,
        name: str,
        parent: Span,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue | None] | None,
        links: Sequence[TraceRef | None],
    ) -> Span:
        """A span under `parent`, or the root of a new trace when `parent` has none."""
        return self.start_request(
            name,
            parent,
            # Those whose value is None too: the encoder leaves them out, in the export
            # thread (a comprehension here cost five times the copy).
            dict(attributes) if attributes else {},
            kind,
            linked(links) if any(links) else (),
        )

    def start_request(
        self,
        name: str,
        parent: Span,
        attributes: dict[str, AttributeValue | None],
        kind: SpanKind = SpanKind.SERVER,
        links: Sequence[SpanContext] = (),
    ) -> Span:
        """A request's span (tracing.start_request): it keeps `attributes`, a fresh dict.
        start_span's spans are made here too, so that a request's takes one call less."""
        if parent.trace_id:
            # ParentBased: the parent's decision, a caller's included.
            trace_id, sampled = parent.trace_id, parent.flags & SAMPLED
        else:
            trace_id, sampled = self._root()
        if not sampled:
            return Unrecorded(trace_id, _span_id(), 0, parent.trace_state, False)
        return RecordedSpan(
            self._batches,
            trace_id,
            random.getrandbits(64) or _span_id(),
            parent,
            name,
            kind,
            attributes,
            links,
        )

    def shutdown(self) -> None:
        """Export what is left, within the settings' timeout; later spans are not sent."""
        self._batches.shutdown(self._timeout)


class SpanBatches:
    """Finished spans waiting, at most `most_waiting` of them (any more are dropped and
    counted), and the thread that exports them: every `delay` seconds, or as soon as a
    batch is full.

    The export thread encodes a batch's spans one after the other, ENCODED_AT_ONCE at a
    time with the GIL let go between: each span so cost about 4 us of CPU, where encoded as
    it ended, between the hub's other work, it cost 10 (bench/README.md, 2026-12-05,
    trace-batch-encode: the encoder's code and remembered bytes stay in the CPU's caches
    through a batch, and are cold again at every span's end). The longer the chunk, the
    warmer: 3.35 us a span in chunks of 256 against 3.9 in chunks of 64, and 3.15 in a whole
    batch, which held the GIL from the event loop for about 1.6 ms; a chunk of 256 holds it
    for about 0.85 (lean4). A finished span is no longer changed, so the thread reads it as
    it was ended."""

    def __init__(
        self,
        encode: Callable[[SpanData], bytes],
        export: Callable[[Sequence[bytes]], None],
        *,
        delay: float,
        most_waiting: int,
        dropped: Dropped | None,
    ) -> None:
        self._encode = encode
        self._export = export
        self._delay = delay
        self._most_waiting = most_waiting
        self._dropped = dropped
        # A deque's append and popleft are atomic: the hub's threads add without a lock.
        self._waiting: deque[SpanData] = deque()
        self._full = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="span export", daemon=True)
        self._thread.start()

    def add(self, span: SpanData) -> None:
        if self._stopping:
            return
        waiting = self._waiting
        if len(waiting) >= self._most_waiting:
            if self._dropped is not None:
                self._dropped(QUEUE_FULL, 1)
            return
        waiting.append(span)
        if len(waiting) >= BATCH_SIZE:
            self._full.set()

    def shutdown(self, timeout: float) -> None:
        self._stopping = True
        self._full.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping:
            full = self._full.wait(self._delay)
            self._full.clear()
            self._send_waiting(everything=not full)
        self._send_waiting(everything=True)

    def _send_waiting(self, *, everything: bool) -> None:
        """The full batches waiting, and the rest too if `everything`: when woken by a full
        batch, what is left stays for the next. Sending all, while spans kept coming during
        each post, made the thread post a few dozen at a time without a pause, several
        times the CPU per span (bench/README.md, 2026-12-05, wave7-trace)."""
        waiting = self._waiting
        while len(waiting) >= BATCH_SIZE or (everything and waiting):
            batch = self._encoded([waiting.popleft() for _ in range(min(BATCH_SIZE, len(waiting)))])
            if not batch:
                continue
            try:
                self._export(batch)
            except Exception as exc:
                # The hub goes on without these spans rather than lose the thread; the error
                # by its kind only, as its text might quote an attribute's value.
                log.error("spans not exported: %s", type(exc).__name__)
                if self._dropped is not None:
                    self._dropped(EXPORT_FAILED, len(batch))

    def _encoded(self, spans: list[SpanData]) -> list[bytes]:
        """The spans' bytes; a span that cannot be encoded is dropped and counted, the
        others go."""
        encoded: list[bytes] = []
        failed = 0
        for index, span in enumerate(spans):
            if index and not index % ENCODED_AT_ONCE:
                # Lets the GIL go, so that the event loop waits for a chunk at most.
                time.sleep(0)
            try:
                encoded.append(self._encode(span))
            except Exception as exc:
                # The error by its kind only, as its text might quote an attribute's value.
                log.error("span not exported: %s", type(exc).__name__)
                failed += 1
        if failed and self._dropped is not None:
            self._dropped(EXPORT_FAILED, failed)
        return encoded


class _Refused(Exception):
    """The collector answered with a status worth retrying."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the collector answered HTTP {status}")


class OtlpHttpCollector:
    """Posts export requests to the OTLP/HTTP endpoint over one kept-alive connection."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float) -> None:
        url = urlsplit(endpoint)
        self._path = url.path + (f"?{url.query}" if url.query else "") or "/"
        self._headers = {
            **headers,
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"derms-bridge/{__version__}",
        }
        self._timeout = timeout
        self._last_answer = 0.0
        host = url.hostname or "localhost"
        self._connection = (
            http.client.HTTPSConnection(
                host, url.port, timeout=timeout, context=ssl.create_default_context()
            )
            if url.scheme == "https"
            else http.client.HTTPConnection(host, url.port, timeout=timeout)
        )

    def post(self, body: bytes) -> bool:
        """Whether the collector took `body`; tried again while it answers that it is busy or
        cannot be reached, within the timeout. What failed is logged by its kind only: the
        endpoint may hold a credential."""
        try:
            for attempt in stamina.retry_context(
                on=(_Refused, OSError, http.client.HTTPException),
                attempts=5,
                timeout=self._timeout,
            ):
                with attempt:
                    status = self._post_once(body)
                    if status in RETRYABLE_STATUSES:
                        raise _Refused(status)
        except (_Refused, OSError, http.client.HTTPException) as exc:
            log.warning("spans not exported: %s", _told(exc))
            return False
        if status >= 300:
            log.warning("spans not exported: the collector answered HTTP %d", status)
            return False
        return True

    def _post_once(self, body: bytes) -> int:
        if time.monotonic() - self._last_answer > IDLE_CONNECTION_SECONDS:
            self._connection.close()
        try:
            self._connection.request("POST", self._path, body, dict(self._headers))
            response = self._connection.getresponse()
            response.read()
        except BaseException:
            # A new connection for the next try: this one may be half-way through a reply.
            self._connection.close()
            raise
        self._last_answer = time.monotonic()
        return response.status


def _told(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _Refused) else type(exc).__name__
