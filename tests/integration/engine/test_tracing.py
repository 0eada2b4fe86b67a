"""Every instance is a trace, exported over OTLP/HTTP to a receiver the test starts on
loopback: flow 1's batch and a reservation file (flow 7), with their parents, the caller's
traceparent continued, the traceparent CPMCS gets, a resubmit's link, and nothing of a
payload or a secret in any span. A trace not sampled (`tracing.sample_ratio`, or a caller's
flag) keeps its id on the instance and in the logs, and none of its spans is exported, a
file's later segments and acknowledgement included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from derms_bridge import tracing
from derms_bridge.api.app import create_app
from derms_bridge.api.traced_requests import TracedRequests
from derms_bridge.bootstrap import Hub, build_hub
from derms_bridge.logs import JsonLines
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Segments, Settings
from derms_bridge.settings.connections import Caller
from derms_bridge.settings.secret_files import resolve_secret_files
from derms_bridge.settings.tracing import OtlpHeader, Tracing
from tests.conftest import (
    DERMS_AUTH,
    OPERATOR_AUTH,
    PASSWORDS,
    empty_tables,
    hub_settings,
)
from tests.csv_files import write_reservation_csv
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, RecordingProxy
from tests.payloads import enrollment_message, enrollment_request

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
#: The collector's API key, given to the hub as a file.
COLLECTOR_KEY = "otlp-key-5d1c0e9a"
SERVER, CLIENT = 2, 3
ERROR = 2
#: An HTTP request's ASGI scope, less its method and path.
REQUEST_SCOPE: dict[str, Any] = {"type": "http", "headers": [], "query_string": b""}
#: A sample ratio at which a trace the hub starts is, to all purposes, never sampled
#: (TraceIdRatioBased: one trace id in 10**12).
NEVER_SAMPLED = 1e-12


@dataclass
class TracedHub:
    hub: Hub
    client: httpx.AsyncClient
    receiver: OtlpReceiver
    cpmcs: RecordingProxy

    async def drain(self) -> None:
        """Run the file worker until no work is left, as a hub process's worker would."""
        while await self.hub.workers.worker.step():
            pass

    async def detail(self, instance_id: str) -> dict[str, Any]:
        found = await self.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        assert found.status_code == 200, found.text
        detail: dict[str, Any] = found.json()
        return detail

    async def spans(self) -> list[ReceivedSpan]:
        """Every span the hub made, once it has sent what it held."""
        await tracing.stop_exporting()
        return self.receiver.spans


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


@pytest.fixture
def cpmcs_proxy(cpmcs_server: ServerThread) -> Iterator[RecordingProxy]:
    with RecordingProxy(cpmcs_server.url) as proxy:
        yield proxy


@pytest.fixture
def sample_ratio() -> float:
    """tracing.sample_ratio of the hub under test; a test sets its own by parametrizing."""
    return 1.0


@pytest.fixture
def tracing_on() -> bool:
    """Whether the hub under test has a `tracing` block; a test sets its own by parametrizing."""
    return True


@pytest.fixture
async def traced(
    sample_ratio: float,
    tracing_on: bool,
    database_url: str,
    cpmcs_proxy: RecordingProxy,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    receiver: OtlpReceiver,
    tmp_path: Path,
) -> AsyncIterator[TracedHub]:
    """A hub whose CPMCS is reached through a recording proxy, exporting its traces to the
    receiver, with the collector's key read from a file."""
    empty_tables(database_url)
    key_file = tmp_path / "otlp-key"
    key_file.write_text(COLLECTOR_KEY + "\n")
    settings = hub_settings(
        database_url,
        cpmcs_proxy.url,
        derms_server.url,
        mailbox,
        callers,
        segments=Segments(size=100, parallelism=2, ack_attempts=1),
    )
    written = {
        "tracing": {
            "endpoint": receiver.endpoint,
            "service_name": "hub-under-test",
            "headers": {"x-api-key": {"value_file": str(key_file)}},
            "batch_delay_seconds": 0.2,
            "sample_ratio": sample_ratio,
        }
    }
    if not tracing_on:
        written = {}
    settings = Settings(**{**dict(settings), **resolve_secret_files([Settings], written)})
    assert not tracing_on or settings.tracing == Tracing(
        endpoint=receiver.endpoint,
        service_name="hub-under-test",
        headers={"x-api-key": OtlpHeader(value=COLLECTOR_KEY)},
        batch_delay_seconds=0.2,
        sample_ratio=sample_ratio,
    )
    built = build_hub(settings, default_lookups)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(built, run_workers=False)),
        base_url="http://hub.test",
        timeout=30,
    ) as client:
        yield TracedHub(built, client, receiver, cpmcs_proxy)
    await built.aclose()


@pytest.fixture
def hub_log() -> Iterator[io.StringIO]:
    """The hub's JSON log lines, as its processes write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("derms_bridge")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def trace_and_sampled(traceparent: str | None) -> tuple[str, bool]:
    """A traceparent's trace id and its sampled flag."""
    assert traceparent is not None
    _, trace_id, _, flags = traceparent.split("-")
    return trace_id, bool(int(flags, 16) & 1)


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [found] = [span for span in spans if span.name == name]
    return found


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_id == parent.span_id]


def no_payload_or_secret(spans: list[ReceivedSpan], *payload_words: str) -> None:
    secrets = (*PASSWORDS.values(), COLLECTOR_KEY)
    for span in spans:
        # The hub adds no events: an exception's event would hold the exception's text.
        assert not span.event_names, f"events in span {span.name}: {span.event_names}"
        written = json.dumps([span.name, span.attributes, span.event_names])
        for word in (*secrets, *payload_words):
            assert word not in written, f"{word!r} in span {span.name}: {written}"


async def test_a_flow_1_batch_is_one_trace_continued_from_its_caller(
    traced: TracedHub,
) -> None:
    ids = ["TR-1", "TR-2", "TR-3"]
    reply = await traced.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(*(enrollment_request(i) for i in ids)),
        auth=DERMS_AUTH,
        headers={"traceparent": CALLER_TRACEPARENT},
    )
    assert reply.status_code == 200
    instance_id = reply.headers["X-Instance-Id"]
    assert (await traced.detail(instance_id))["trace_id"] == CALLER_TRACE

    spans = [s for s in await traced.spans() if s.trace_id == CALLER_TRACE]

    # The trigger's request is its instance's span.
    request = one(spans, "POST /enroll-to-dacs")
    assert (request.kind, request.parent_id) == (SERVER, CALLER_SPAN)
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["http.route"] == "/enroll-to-dacs"
    assert request.attributes["derms_bridge.instance_id"] == instance_id
    assert request.attributes["derms_bridge.flow"] == "enrollment_request"
    assert request.attributes["derms_bridge.status"] == "succeeded"
    calls = children(spans, request)
    assert [c.name for c in calls] == ["CPMCS enrollProgram"] * 3
    assert {c.kind for c in calls} == {CLIENT}
    assert {c.attributes["http.response.status_code"] for c in calls} == {200}
    assert {s.service for s in spans} == {"hub-under-test"}
    # Each call CPMCS received carried the traceparent of its own span.
    sent = {parent for path, parent in traced.cpmcs.traceparents if path.endswith("/enroll")}
    assert sent == {f"00-{CALLER_TRACE}-{c.span_id}-01" for c in calls}
    # The collector got its key, read from the file, with every export.
    assert {h.get("x-api-key") for h in traced.receiver.headers} == {COLLECTOR_KEY}
    no_payload_or_secret(spans, "Ada Lovelace", "4567890123", "GOOGLE")


async def test_a_reservation_file_is_one_trace_across_its_segments_and_acknowledgement(
    traced: TracedHub, tmp_path: Path
) -> None:
    message = {
        "drmsInstanceId": "DRMS-7",
        "messageId": "RSV-TRACE",
        "eventId": "EV-1",
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
    csv_file = write_reservation_csv(tmp_path / "r.csv", 250)
    reply = await traced.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(message)},
        files={"file": ("devices.csv", csv_file.read_bytes(), "text/csv")},
        auth=DERMS_AUTH,
    )
    assert reply.status_code == 202
    instance_id = reply.json()["instanceId"]
    await traced.drain()
    detail = await traced.detail(instance_id)
    assert detail["status"] == "succeeded"
    trace_id = detail["trace_id"]

    spans = [s for s in await traced.spans() if s.trace_id == trace_id]

    request = one(spans, "POST /device-reservation-to-dacs")
    assert (request.kind, request.parent_id) == (SERVER, None)
    assert request.attributes["derms_bridge.instance_id"] == instance_id
    # Its steps hang under it, though a worker runs them once the request has ended.
    steps = children(spans, request)
    assert sorted(s.name for s in steps) == [
        "acknowledgement",
        "health check",
        "segment 1",
        "segment 2",
        "segment 3",
    ]
    assert [c.name for c in children(spans, one(steps, "health check"))] == ["CPMCS healthCheck"]
    for seq, rows in ((1, 100), (2, 100), (3, 50)):
        segment = one(steps, f"segment {seq}")
        assert segment.attributes["derms_bridge.rows"] == rows
        [call] = children(spans, segment)
        assert (call.name, call.kind) == ("CPMCS reserveDevice", CLIENT)
    acknowledgement = children(spans, one(steps, "acknowledgement"))
    assert sorted(s.name for s in acknowledgement) == [
        "DERMS default deviceReservationAck",
        "processComplete email",
    ]
    [mail] = children(spans, one(acknowledgement, "processComplete email"))
    assert (mail.name, mail.kind) == ("smtp send", CLIENT)
    sent = [parent for path, parent in traced.cpmcs.traceparents if path.endswith("/reserveDevice")]
    assert len(sent) == 3
    assert all(parent is not None and parent.split("-")[1] == trace_id for parent in sent)
    # The file's devices (NIC-000001...) and head end, and the message's identifiers.
    no_payload_or_secret(spans, "NIC-0", "ECOBEE", "RSV-TRACE", "DRMS-7")


async def test_a_resubmit_is_its_own_trace_linked_to_the_run_it_repeats(
    traced: TracedHub, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    failed = await traced.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request("TR-AGAIN")),
        auth=DERMS_AUTH,
    )
    first = await traced.detail(failed.headers["X-Instance-Id"])
    assert first["status"] == "failed"
    cpmcs_sim.put("/_sim/faults", json={}).raise_for_status()

    again = await traced.client.post(f"/ops/instances/{first['id']}/resubmit", auth=OPERATOR_AUTH)
    assert again.status_code == 200, again.text
    second = again.json()
    assert second["status"] == "succeeded"
    assert second["trace_id"] != first["trace_id"]

    spans = await traced.spans()
    failed_run = one([s for s in spans if s.trace_id == first["trace_id"]], "POST /enroll-to-dacs")
    assert (failed_run.status, failed_run.attributes["derms_bridge.status"]) == (ERROR, "failed")
    [call] = [s for s in spans if s.parent_id == failed_run.span_id and s.kind == CLIENT]
    assert (call.attributes["http.response.status_code"], call.status) == (503, ERROR)
    assert "error handler" in [s.name for s in children(spans, failed_run)]
    repeat = one(
        [s for s in spans if s.trace_id == second["trace_id"]],
        "POST /ops/instances/{instance_id}/resubmit",
    )
    assert repeat.attributes["derms_bridge.instance_id"] == second["id"]
    assert repeat.links == [(failed_run.trace_id, failed_run.span_id)]
    assert repeat.attributes["derms_bridge.resubmit_of"] == first["id"]


@pytest.mark.parametrize("sample_ratio", [NEVER_SAMPLED])
async def test_a_trace_not_sampled_keeps_its_id_on_the_instance_and_in_the_logs(
    traced: TracedHub, cpmcs_sim: httpx.Client, hub_log: io.StringIO
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    reply = await traced.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request("TR-UNSAMPLED")),
        auth=DERMS_AUTH,
    )
    instance_id = reply.headers["X-Instance-Id"]
    detail = await traced.detail(instance_id)
    assert detail["status"] == "failed"
    trace_id = detail["trace_id"]
    assert isinstance(trace_id, str)
    assert len(trace_id) == 32

    lines = [json.loads(line) for line in hub_log.getvalue().splitlines()]
    of_instance = [line for line in lines if line.get("instance_id") == instance_id]
    assert "flow error" in [line["message"] for line in of_instance]
    assert {line.get("trace_id") for line in of_instance} == {trace_id}
    # CPMCS was told the trace, and that it is not sampled.
    [sent] = [parent for path, parent in traced.cpmcs.traceparents if path.endswith("/enroll")]
    assert trace_and_sampled(sent) == (trace_id, False)
    # Nothing was exported: neither this trace nor the operator's requests, each a trace
    # the hub started.
    assert await traced.spans() == []


@pytest.mark.parametrize(
    ("sample_ratio", "flags", "exported"),
    [(1.0, "00", False), (NEVER_SAMPLED, "01", True)],
    ids=["not-sampled-by-the-caller", "sampled-by-the-caller"],
)
async def test_a_files_later_work_follows_its_traces_sampled_flag(
    traced: TracedHub, tmp_path: Path, flags: str, exported: bool
) -> None:
    message = {
        "drmsInstanceId": "DRMS-7",
        "messageId": f"RSV-SAMPLED-{flags}",
        "eventId": "EV-1",
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
    csv_file = write_reservation_csv(tmp_path / "r.csv", 150)
    reply = await traced.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(message)},
        files={"file": ("devices.csv", csv_file.read_bytes(), "text/csv")},
        auth=DERMS_AUTH,
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}"},
    )
    assert reply.status_code == 202
    instance_id = reply.json()["instanceId"]
    await traced.drain()
    detail = await traced.detail(instance_id)
    assert (detail["status"], detail["trace_id"]) == ("succeeded", CALLER_TRACE)

    # The segments, run by the worker after the request ended, went on in the caller's
    # trace with its flag.
    sent = [parent for path, parent in traced.cpmcs.traceparents if path.endswith("/reserveDevice")]
    assert len(sent) == 2
    assert {trace_and_sampled(parent) for parent in sent} == {(CALLER_TRACE, exported)}
    names = sorted(s.name for s in await traced.spans() if s.trace_id == CALLER_TRACE)
    if exported:
        assert names == [
            "CPMCS healthCheck",
            "CPMCS reserveDevice",
            "CPMCS reserveDevice",
            "DERMS default deviceReservationAck",
            "POST /device-reservation-to-dacs",
            "acknowledgement",
            "health check",
            "processComplete email",
            "segment 1",
            "segment 2",
            "smtp send",
        ]
    else:
        assert names == []


@pytest.mark.parametrize("tracing_on", [False])
async def test_without_tracing_a_callers_trace_still_goes_on_and_none_is_made_up(
    traced: TracedHub,
) -> None:
    continued = await traced.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request("OFF-1")),
        auth=DERMS_AUTH,
        headers={"traceparent": CALLER_TRACEPARENT},
    )
    untraced = await traced.client.post(
        "/enroll-to-dacs",
        json=enrollment_message(enrollment_request("OFF-2")),
        auth=DERMS_AUTH,
    )

    assert (continued.status_code, untraced.status_code) == (200, 200)
    assert (await traced.detail(continued.headers["X-Instance-Id"]))["trace_id"] == CALLER_TRACE
    assert (await traced.detail(untraced.headers["X-Instance-Id"]))["trace_id"] is None
    sent = [parent for path, parent in traced.cpmcs.traceparents if path.endswith("/enroll")]
    # The caller's own span goes on as the parent: the hub, recording nothing, adds none.
    assert sent == [CALLER_TRACEPARENT, None]
    assert traced.receiver.spans == []


async def test_an_exception_marks_its_span_failed_by_its_type_without_its_text(
    receiver: OtlpReceiver,
) -> None:
    tracing.start_exporting(Tracing(endpoint=receiver.endpoint), process="test")
    try:
        with pytest.raises(ValueError, match="Ada Lovelace"), tracing.span("step"):
            raise ValueError("Ada Lovelace, 4567890123")
    finally:
        await tracing.stop_exporting()

    [step] = receiver.spans
    assert step.status == ERROR
    assert step.attributes == {"error.type": "ValueError"}
    no_payload_or_secret(receiver.spans, "Ada Lovelace", "4567890123")


async def test_a_request_span_is_named_by_its_route_and_a_server_error_fails_it(
    receiver: OtlpReceiver,
) -> None:
    """A trigger's route is found before the request reaches TracedRequests
    (api/plain_triggers.py), any other's by the app's routing inside it: both name the span."""

    def endpoint() -> None:
        """Never called: the routes only name the requests."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/late/"):
            scope["route"] = Route("/late/{number}", endpoint)
        status = 503 if scope["path"].startswith("/late/") else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def sent(message: Message) -> None:
        answers.append(message)

    answers: list[Message] = []
    traced = TracedRequests(app)
    tracing.start_exporting(Tracing(endpoint=receiver.endpoint), process="test")
    try:
        early = {"route": Route("/early", endpoint, methods=["POST"])}
        await traced({**REQUEST_SCOPE, "method": "POST", "path": "/early", **early}, receive, sent)
        await traced({**REQUEST_SCOPE, "method": "GET", "path": "/late/7"}, receive, sent)
    finally:
        await tracing.stop_exporting()

    assert [answer.get("status") for answer in answers] == [200, None, 503, None]
    trigger = one(receiver.spans, "POST /early")
    assert (trigger.kind, trigger.status) == (SERVER, 0)
    assert trigger.attributes == {
        "http.request.method": "POST",
        "url.path": "/early",
        "http.route": "/early",
        "http.response.status_code": 200,
    }
    routed = one(receiver.spans, "GET /late/{number}")
    assert (routed.kind, routed.status) == (SERVER, ERROR)
    assert routed.attributes == {
        "http.request.method": "GET",
        "url.path": "/late/7",
        "http.route": "/late/{number}",
        "http.response.status_code": 503,
        "error.type": "503",
    }


async def test_a_request_the_app_fails_is_failed_by_its_type_and_leaves_no_span_running(
    receiver: OtlpReceiver,
) -> None:
    """An exception out of the app ends the request's span, failed by the exception's type
    and never its text, and the span is no longer the running one after the request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("Ada Lovelace, 4567890123")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def sent(message: Message) -> None:
        """Nothing is answered: the server answers 500 for an app that fails."""

    traced = TracedRequests(app)
    tracing.start_exporting(Tracing(endpoint=receiver.endpoint), process="test")
    try:
        with pytest.raises(RuntimeError, match="Ada Lovelace"):
            await traced({**REQUEST_SCOPE, "method": "POST", "path": "/boom"}, receive, sent)
        running_after = tracing.current_trace_id()
    finally:
        await tracing.stop_exporting()

    assert running_after is None
    failed = one(receiver.spans, "POST")
    assert (failed.kind, failed.status) == (SERVER, ERROR)
    assert failed.attributes == {
        "http.request.method": "POST",
        "url.path": "/boom",
        "error.type": "RuntimeError",
    }
    no_payload_or_secret(receiver.spans, "Ada Lovelace", "4567890123")


@pytest.mark.parametrize("exporting", [True, False], ids=["exporting", "tracing-off"])
async def test_a_callers_tracestate_goes_on_and_the_spans_read_as_the_api_reads_them(
    receiver: OtlpReceiver, exporting: bool
) -> None:
    """The hub keeps its running span itself (tracing.py): what an outbound call sends, and
    what OpenTelemetry's W3C propagator writes of the instance's span, agree."""
    tracestate = "vendor=t61rcWkgMzE,other=1"
    seen: list[tuple[dict[str, str], tracing.Span]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with (
            tracing.instance("instance x", attributes={"derms_bridge.flow": "x"}) as span,
            tracing.outbound("CPMCS call", {"http.request.method": "POST"}) as call,
        ):
            seen.append((dict(call.headers), span))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def sent(message: Message) -> None:
        """The answer is not what is looked at."""

    headers = [(b"traceparent", CALLER_TRACEPARENT.encode()), (b"tracestate", tracestate.encode())]
    if exporting:
        tracing.start_exporting(Tracing(endpoint=receiver.endpoint), process="test")
    try:
        await TracedRequests(app)(
            {**REQUEST_SCOPE, "method": "POST", "path": "/x", "headers": headers}, receive, sent
        )
    finally:
        await tracing.stop_exporting()

    [(call_headers, instance)] = seen
    written: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(written, trace.set_span_in_context(instance))
    assert call_headers["tracestate"] == written["tracestate"] == tracestate
    if not exporting:
        # Nothing recorded: the caller's span goes on as it came, to the call and the API.
        assert call_headers["traceparent"] == written["traceparent"] == CALLER_TRACEPARENT
        assert receiver.spans == []
        return
    request = one(receiver.spans, "POST")
    [call] = children(receiver.spans, request)
    assert (request.trace_id, request.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert call_headers["traceparent"] == f"00-{CALLER_TRACE}-{call.span_id}-01"
    assert written["traceparent"] == f"00-{CALLER_TRACE}-{request.span_id}-01"
