"""Traces with OpenTelemetry: every instance is a trace, exported over OTLP/HTTP when the
settings' `tracing` block says where, and nothing at all when it does not.

Without the block no exporting tracer is made: a span records nothing and is its parent's
carried on, as with the API's no-op tracer, which costs a few attribute-free calls, and a
caller's W3C `traceparent` still goes on to every outbound call (it is continued, never
recorded). A hub in a test starts and stops its own exporter, so the tracer is this
module's, not OpenTelemetry's process-wide global; and the running span is kept in a
context variable of this module's, not in OpenTelemetry's Context: every span is made,
made current and read here, with its ids as plain numbers (`Span`).

No span carries a payload, a secret or an error's text: names, identifiers, HTTP methods,
paths and statuses only. An error is told by its type, its text stays in the instance's
activities.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, Protocol

from opentelemetry import trace
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util import types

from derms_bridge.otlp_protobuf import AttributeValue
from derms_bridge.settings.tracing import Tracing

if TYPE_CHECKING:
    from derms_bridge.tracing_export import ExportingTracer

__all__ = ["AttributeValue", "Span", "SpanKind", "TraceRef", "Tracing"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: Why spans of sampled traces are not exported: made faster than the collector takes
#: them, or refused by it (or it could not be reached).
QUEUE_FULL = "queue full"
EXPORT_FAILED = "export failed"
#: Told how many spans were dropped, and why (one of the two above).
Dropped = Callable[[str, int], None]
#: W3C trace flags: the trace is sampled.
SAMPLED = 0x01


class Span(trace.Span):
    """A span of the hub's: the API's Span, with what its children, its outbound calls, its
    instance and the logs read of it kept as plain numbers (trace id 0: no trace). Its
    SpanContext is made only when one is asked for; the hub's own code never asks: every
    span made would have cost one (a tuple checked and built in Python), and every reader
    its properties (bench/README.md, 2026-12-05, trace-lean)."""

    trace_id: int
    span_id: int
    #: The W3C trace flags, SAMPLED among them when the trace is.
    flags: int
    #: The W3C tracestate it carries, as its header has it, "" for none.
    trace_state: str
    #: Whether the span is a caller's, or the instance's a later work hangs under.
    is_remote: bool
    #: A request's span that no instance has taken as its own yet (start_request).
    awaiting_instance = False
    #: Whether the span is recorded (exported when it ends). A class's own flag rather than
    #: `isinstance`: Span is an abstract base class of the API's, and an isinstance check
    #: that fails goes through ABCMeta's, a call in Python.
    records: bool

    def keep_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """The hub's own attributes, scalars by their type: kept as they are, without the
        API's `set_attributes` looking at each value (one whose value is None is left out
        when the span is exported)."""

    def get_span_context(self) -> SpanContext:
        return SpanContext(
            self.trace_id,
            self.span_id,
            self.is_remote,
            TraceFlags(self.flags),
            TraceState.from_header([self.trace_state]) if self.trace_state else None,
        )


class Unrecorded(Span):
    """A span that records nothing: tracing off (a caller's span, continued), a trace not
    sampled, or the span an instance's later work hangs under. It still carries its trace id
    to the logs and its traceparent to every outbound call."""

    __slots__ = ("flags", "is_remote", "span_id", "trace_id", "trace_state")
    records = False

    def __init__(
        self, trace_id: int, span_id: int, flags: int, trace_state: str, is_remote: bool
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.trace_state = trace_state
        self.is_remote = is_remote

    def end(self, end_time: int | None = None) -> None:
        """Nothing to end: nothing was recorded."""

    def is_recording(self) -> bool:
        return False

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Not recorded."""

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """Not recorded."""

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Not recorded."""

    def update_name(self, name: str) -> None:
        """Not recorded."""

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Not recorded."""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Not recorded."""


#: The running span when there is no trace: tracing off and no caller's traceparent.
NO_TRACE = Unrecorded(0, 0, 0, "", False)
#: The running span: a context variable of the hub's own rather than OpenTelemetry's
#: Context, whose `attach` copies a dict and makes two objects more each time, and whose
#: readers take several calls to find the span (bench/README.md, trace-lean). Every span
#: is made, made current and read through this module, so nothing else reads the API's.
_current_span: ContextVar[Span] = ContextVar("derms_bridge_span", default=NO_TRACE)


class _Tracer(Protocol):
    def start_span(
        self,
        name: str,
        parent: Span,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue | None] | None,
        links: Sequence[TraceRef | None],
    ) -> Span: ...

    def start_request(
        self, name: str, parent: Span, attributes: dict[str, AttributeValue | None]
    ) -> Span: ...


class _NotRecording:
    """The tracer when tracing is off: a span is its parent's, carried on (a caller's
    traceparent goes on as it came), as with the API's no-op tracer."""

    def start_span(
        self,
        name: str,
        parent: Span,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue | None] | None,
        links: Sequence[TraceRef | None],
    ) -> Span:
        if not parent.records:
            return parent
        # A recorded span (exporting stopped meanwhile): its ids, never the span itself,
        # which its own scope ends.
        return Unrecorded(
            parent.trace_id, parent.span_id, parent.flags, parent.trace_state, parent.is_remote
        )

    def start_request(
        self, name: str, parent: Span, attributes: dict[str, AttributeValue | None]
    ) -> Span:
        return self.start_span(name, parent, SpanKind.SERVER, None, ())


_NO_OP: _Tracer = _NotRecording()


@dataclass
class _Exporting:
    tracer: _Tracer = _NO_OP
    exporter: ExportingTracer | None = None


_exporting = _Exporting()


class TraceRef(NamedTuple):
    """Where an instance's trace hangs: its trace id and, when the trace is sampled, the
    span of its instance (32 and 16 lowercase hex digits), kept with the instance so that
    work done later, by any hub process (a file's segments, its acknowledgement), joins the
    same trace and follows its sampling decision. A named tuple: every instance makes one,
    at two thirds of a frozen dataclass's CPU."""

    trace_id: str
    #: None when the trace is not sampled: its instance's span was never recorded.
    span_id: str | None


def ref_of(span: Span) -> TraceRef | None:
    """The span's trace id, and its span id when it is sampled; None when it has no trace
    (tracing off, no caller's traceparent to continue)."""
    if not span.trace_id:
        return None
    # An id's bytes in hex, as W3C Trace Context writes it: two thirds of the CPU of
    # formatting the number with `:032x`.
    return TraceRef(
        span.trace_id.to_bytes(16).hex(),
        span.span_id.to_bytes(8).hex() if span.flags & SAMPLED else None,
    )


def current_ref() -> TraceRef | None:
    """The running span's TraceRef, if there is a trace to join."""
    return ref_of(_current_span.get())


def kept_ref(trace_id: str | None, span_id: str | None) -> TraceRef | None:
    """An instance's TraceRef as its columns keep it."""
    return TraceRef(trace_id, span_id) if trace_id is not None else None


def linked(refs: Sequence[TraceRef | None]) -> list[SpanContext]:
    """Links to the instances' spans that were recorded (sampled); a link to one that was
    not would lead nowhere."""
    return [
        SpanContext(
            int(ref.trace_id, 16),
            int(ref.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        for ref in refs
        if ref is not None and ref.span_id is not None
    ]


def current_trace_id() -> str | None:
    """The trace the running code belongs to, if it belongs to one."""
    trace_id = _current_span.get().trace_id
    return trace_id.to_bytes(16).hex() if trace_id else None


def is_exporting() -> bool:
    return _exporting.exporter is not None


def start_exporting(settings: Tracing, *, process: str, dropped: Dropped | None = None) -> None:
    """Spans from now on are sampled and go to the OTLP/HTTP endpoint, in batches, from a
    thread of their own (tracing_export.py, imported only here); `dropped` is told of the
    spans lost to a full queue or a failed export."""
    from derms_bridge.tracing_export import ExportingTracer

    exporter = ExportingTracer(settings, process=process, dropped=dropped)
    _exporting.exporter = _exporting.tracer = exporter


async def stop_exporting() -> None:
    """Send what is left (the exporter's timeout at most), then no more spans are made."""
    exporter = _exporting.exporter
    if exporter is None:
        return
    _exporting.exporter, _exporting.tracer = None, _NO_OP
    await asyncio.to_thread(exporter.shutdown)


def continued(headers: Mapping[str, str]) -> Span | None:
    """The span of a caller's `traceparent` (and `tracestate`), if it sent a valid one: the
    parent of the request's."""
    if "traceparent" not in headers:
        return None
    found = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
    if not found.is_valid:
        return None
    return Unrecorded(
        found.trace_id,
        found.span_id,
        found.trace_flags,
        found.trace_state.to_header() if found.trace_state else "",
        True,
    )


def under(ref: TraceRef | None) -> Span | None:
    """The parent of work that joins the trace `ref` names later: the instance's span when
    the trace is sampled; else one of the same trace that is not sampled either (its id made
    up, as no span of the trace was recorded), so that the work keeps the trace id, in its
    logs and its traceparent, and records nothing."""
    if ref is None:
        return None
    if ref.span_id is None:
        return Unrecorded(int(ref.trace_id, 16), secrets.randbelow(2**64 - 1) + 1, 0, "", True)
    return Unrecorded(int(ref.trace_id, 16), int(ref.span_id, 16), SAMPLED, "", True)


def _trace_headers(parent: Span) -> dict[str, str]:
    """The `traceparent` (and `tracestate`) of an outbound request made under `parent`, a
    span with a trace: what the W3C propagator's `inject` writes, without its setter's and
    formatters' calls (every outbound call makes one)."""
    headers = {
        "traceparent": (
            f"00-{parent.trace_id.to_bytes(16).hex()}-{parent.span_id.to_bytes(8).hex()}"
            f"-{parent.flags:02x}"
        )
    }
    if parent.trace_state:
        headers["tracestate"] = parent.trace_state
    return headers


class OutboundCall:
    """An outbound HTTP call's client span (`<system> <operation>`) and the trace headers
    its requests send (`headers`: none when there is no trace to carry on). This one records
    nothing: tracing is off, or the trace is not sampled; tracing_export.RecordedCall is the
    one that does.

    Not a Span, and never the current span: nothing runs inside a call but its own requests
    (its OAuth2 token request among them), which are handed `headers`. Without a Span object
    and a context to attach and detach, a recorded call's span costs about 6 us of CPU
    against tracing.span's 10.5, its encoding included (bench/README.md, wave7-trace), and
    every synchronous message makes one."""

    __slots__ = ("headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers

    def __enter__(self) -> OutboundCall:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Nothing to end: nothing was recorded."""

    def answered(self, status: int | None, error_type: str | None) -> None:
        """The HTTP status the system answered, if it did, and the kind of error when the
        call failed (an exception raised out of the `with` block says its own type)."""


_NOT_CARRIED = OutboundCall({})


def outbound(name: str, attributes: dict[str, AttributeValue]) -> OutboundCall:
    """The span of an outbound HTTP call made under the running span, `attributes` the
    call's own (a fresh dict: the span keeps it)."""
    parent = _current_span.get()
    exporter = _exporting.exporter
    if exporter is not None:
        return exporter.outbound(name, parent, attributes)
    # Tracing off: a caller's traceparent goes on as it came (continued, never recorded).
    return OutboundCall(_trace_headers(parent)) if parent.trace_id else _NOT_CARRIED


class SpanScope:
    """A span, started on the way in and ended on the way out, and the current one inside
    unless `current` is False (a span around an async generator's yields, which may resume
    in another context); an exception marks it failed by its type alone (its text may quote
    a payload). A class rather than a generator: a flow enters several, and this is half
    the CPU of a generator's context manager around the API's `use_span`."""

    __slots__ = (
        "_attributes",
        "_current",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_span",
        "_token",
    )

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        parent: Span | None,
        links: Sequence[TraceRef | None],
        attributes: Mapping[str, AttributeValue | None] | None,
        current: bool,
    ) -> None:
        self._name = name
        self._kind = kind
        self._parent = parent
        self._links = links
        self._attributes = attributes
        self._current = current
        self._token: Token[Span] | None = None

    def __enter__(self) -> Span:
        running = _current_span.get()
        self._span = started = _exporting.tracer.start_span(
            self._name,
            running if self._parent is None else self._parent,
            self._kind,
            self._attributes,
            self._links,
        )
        # Tracing off, a span is the running one carried on: nothing to make current.
        if self._current and started is not running:
            self._token = _current_span.set(started)
        return started

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current_span.reset(self._token)
        if isinstance(error, Exception):
            failed(self._span, type(error).__name__)
        self._span.end()


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Span | None = None,
    links: Sequence[TraceRef | None] = (),
    attributes: Mapping[str, AttributeValue | None] | None = None,
    current: bool = True,
) -> SpanScope:
    """A span around the `with` block (SpanScope); `parent` is the running span unless
    given (`continued`, `under`)."""
    return SpanScope(name, kind, parent, links, attributes, current)


def start_request(
    name: str, parent: Span | None, attributes: dict[str, AttributeValue | None]
) -> tuple[Span, Token[Span] | None]:
    """A request's span (SERVER), started and made current, and the token that `end_request`
    takes to end it: `parent` the caller's (`continued`), if it sent one; `attributes` a
    fresh dict (the span keeps it). The first instance the request brings takes the span as
    its own (`instance`), marked for it as `awaiting_instance`.

    Two functions around a `try` rather than a scope object's `with`: every message comes
    in one, and the ASGI wrapper (api/traced_requests.py) is where exporting costs the
    event loop most beside the spans' own making (bench/README.md, 2026-12-05, lean3)."""
    running = _current_span.get()
    started = _exporting.tracer.start_request(
        name, running if parent is None else parent, attributes
    )
    if started is running:
        # Tracing off and no caller's trace: the running span carried on, nothing to make
        # current (NO_TRACE is every such request's).
        return started, None
    # A span that records nothing has nothing to give an instance: the instance's own
    # records nothing either and keeps the trace id.
    if started.records:
        started.awaiting_instance = True
    return started, _current_span.set(started)


def end_request(started: Span, token: Token[Span] | None) -> None:
    """End a request's span (`start_request`), the running span again what it was before;
    a request that raised is marked `failed` by its caller first, by the exception's type."""
    if started.awaiting_instance:
        # Work the request left running (a task it started) makes its own spans.
        started.awaiting_instance = False
    if token is not None:
        _current_span.reset(token)
    started.end()


def answered(request_span: Span, status: int) -> None:
    """The status a request was answered with; a server error marks it failed."""
    request_span.set_attribute("http.response.status_code", status)
    if status >= 500:
        failed(request_span, str(status))


class InstanceScope:
    """An instance's span (`instance`). A class, as SpanScope is: every message enters one."""

    __slots__ = ("_attributes", "_links", "_name", "_own", "_request")

    def __init__(
        self,
        name: str,
        links: Sequence[TraceRef | None],
        attributes: Mapping[str, AttributeValue | None],
    ) -> None:
        self._name = name
        self._links = links
        self._attributes = attributes
        self._own: SpanScope | None = None
        self._request: Span | None = None

    def __enter__(self) -> Span:
        running = _current_span.get()
        if not running.awaiting_instance:
            self._own = SpanScope(
                self._name, SpanKind.INTERNAL, None, self._links, self._attributes, True
            )
            return self._own.__enter__()
        running.awaiting_instance = False
        self._request = running
        if any(self._links):
            for link in linked(self._links):
                running.add_link(link)
        running.keep_attributes(self._attributes)
        return running

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._own is not None:
            self._own.__exit__(kind, error, traceback)
        elif self._request is not None and isinstance(error, Exception):
            failed(self._request, type(error).__name__)


def instance(
    name: str,
    *,
    links: Sequence[TraceRef | None] = (),
    attributes: Mapping[str, AttributeValue | None],
) -> InstanceScope:
    """An instance's span. The first instance a request brings takes the request's span as
    its own (a trigger's request and its instance begin and end together: one span, not
    two alike, at a third less of tracing's cost per message); any other, a child instance
    or one a request runs beside it, has a span of its own under the current one."""
    return InstanceScope(name, links, attributes)


def failed(started: Span, error_type: str) -> None:
    """Mark a span failed, by the kind of error only."""
    started.set_attribute("error.type", error_type)
    started.set_status(Status(StatusCode.ERROR, error_type))
