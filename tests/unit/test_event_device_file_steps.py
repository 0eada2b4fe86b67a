"""The file flows' steps 2 to 5 (flows 7 and 8) against fakes: the health check, a
segment's call, and the one acknowledgement with its retries and emails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stamina
from pydantic import BaseModel

from derms_bridge.errors import BusinessError, TechnicalFault
from derms_bridge.flows import event_device_outcome, event_device_reservation
from derms_bridge.flows.ports import FileJobContext, FileOutcome
from derms_bridge.schemas.event_device_outcome import OutcomeMessage
from derms_bridge.schemas.event_device_reservation import ReservationMessage
from derms_bridge.schemas.ops import SetAsideRow
from tests.fakes import FakeCpmcs, FakeDerms, FakeErrors, FakeNotifications, Script

RESERVATION = ReservationMessage.model_validate(
    {
        "messageId": "RSV-1",
        "eventId": "EV-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
)
OUTCOMES = OutcomeMessage.model_validate({"messageId": "OUT-1", "fileName": "outcomes.csv"})
SENT = FileOutcome(code="SUCCESS", failure=None, rows=250, segments=3, run=2, segments_sent_again=1)
FAILED = FileOutcome(
    code="FAILURE",
    failure="segment 2 (100 rows from line 102): CPMCS said no",
    rows=250,
    segments=3,
    run=1,
    segments_sent_again=0,
)
SENT_SUMMARY = (
    "250 rows in 3 segments taken by CPMCS reserveDevice (run 2); 1 segment sent more than once"
)


class SegmentCpmcs(FakeCpmcs):
    """CPMCS that also takes bodies written as JSON, as a segment's call sends them."""

    def __init__(self, script: Script | None = None) -> None:
        super().__init__(script)
        self.bodies: list[tuple[str, bytes]] = []

    async def send_json(self, operation: str, body_json: bytes) -> None:
        self.bodies.append((operation, body_json))
        planned = self.script.get(operation)
        if isinstance(planned, Exception):
            raise planned


class Steps:
    def __init__(self, cpmcs: Script | None = None, derms: Script | None = None) -> None:
        self.cpmcs = SegmentCpmcs(cpmcs)
        self.derms = FakeDerms(derms)
        self.errors = FakeErrors()
        self.notices = FakeNotifications()
        self.context = FileJobContext(
            cpmcs=self.cpmcs,
            derms=self.derms,
            errors=self.errors,
            notices=self.notices,
            ack_attempts=3,
        )


@pytest.fixture(autouse=True)
def no_waits_between_tries() -> Iterator[None]:
    # The flows' own number of tries, without the waits between them.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def ack_of(body: BaseModel | None) -> dict[str, Any]:
    assert body is not None
    [response] = body.model_dump(mode="json")["MsgAck"]["responses"]["response"]
    assert isinstance(response, dict)
    return response


async def test_the_health_check_calls_cpmcs_health_check() -> None:
    steps = Steps(cpmcs={"healthCheck": {"status": "UP"}})

    assert await event_device_reservation.FLOW.check_health(steps.context) is None
    assert [sent.operation for sent in steps.cpmcs.sent] == ["healthCheck"]


async def test_cpmcs_down_at_the_health_check_is_the_files_failure() -> None:
    steps = Steps(cpmcs={"healthCheck": TechnicalFault("CPMCS answered HTTP 503")})

    failure = await event_device_outcome.FLOW.check_health(steps.context)

    assert failure == "CPMCS health check failed: CPMCS answered HTTP 503"


@pytest.mark.parametrize(
    ("flow", "operation"),
    [
        (event_device_reservation.FLOW, "reserveDevice"),
        (event_device_outcome.FLOW, "postEventOutcome"),
    ],
)
async def test_a_segment_goes_to_its_flows_operation_as_it_was_built(
    flow: Any, operation: str
) -> None:
    steps = Steps()

    assert await flow.send_segment(steps.cpmcs, b'{"deviceList":[]}') is None
    assert steps.cpmcs.bodies == [(operation, b'{"deviceList":[]}')]


async def test_a_segment_cpmcs_refuses_says_why() -> None:
    steps = Steps(cpmcs={"reserveDevice": BusinessError("no such event", http_status=400)})

    error = await event_device_reservation.send_segment(steps.cpmcs, b"{}")

    assert error is not None and "no such event" in error


@pytest.mark.parametrize(
    "fault",
    [
        TechnicalFault("CPMCS answered HTTP 500 to reserveDevice", http_status=500),
        TechnicalFault("CPMCS answered HTTP 429 to reserveDevice", http_status=429),
        TechnicalFault("CPMCS did not answer reserveDevice", timed_out=True, answer_lost=True),
        TechnicalFault("CPMCS unreachable: connection refused", unreachable=True),
        TechnicalFault("CPMCS broke the connection", unreachable=True, answer_lost=True),
    ],
)
async def test_a_passing_fault_of_a_segment_is_raised_for_the_engine_to_try_again(
    fault: TechnicalFault,
) -> None:
    steps = Steps(cpmcs={"reserveDevice": fault})

    with pytest.raises(TechnicalFault) as raised:
        await event_device_reservation.send_segment(steps.cpmcs, b"{}")

    assert raised.value is fault


@pytest.mark.parametrize("status", [404, 409, 403, 302])
async def test_a_segment_answered_with_another_http_error_says_why_and_is_not_tried_again(
    status: int,
) -> None:
    fault = TechnicalFault(f"CPMCS answered HTTP {status} to reserveDevice", http_status=status)
    steps = Steps(cpmcs={"reserveDevice": fault})

    error = await event_device_reservation.send_segment(steps.cpmcs, b"{}")

    assert error == f"CPMCS answered HTTP {status} to reserveDevice"


async def test_a_file_sent_whole_is_acknowledged_success_once() -> None:
    steps = Steps(derms={"deviceReservationAck": {"MsgAck": {"ackType": "SUCCESS"}}})

    acknowledged = await event_device_reservation.acknowledge(steps.context, RESERVATION, SENT)

    assert acknowledged.error is None
    [sent] = steps.derms.sent
    assert sent.operation == "deviceReservationAck"
    assert sent.body is not None
    assert acknowledged.msg_ack == sent.body.model_dump(mode="json", exclude_none=True)
    response = ack_of(sent.body)
    assert (response["id"], response["responseCode"]) == ("RSV-1", "SUCCESS")
    assert response["value"] == SENT_SUMMARY
    assert steps.errors.reported == []
    assert steps.notices.sent == [("SUCCESS", SENT_SUMMARY)]


async def test_a_failed_file_is_acknowledged_failure_and_its_error_emailed() -> None:
    steps = Steps(derms={"deviceOutcomeAck": {"MsgAck": {"ackType": "SUCCESS"}}})

    acknowledged = await event_device_outcome.acknowledge(steps.context, OUTCOMES, FAILED)

    assert acknowledged.error is None
    [sent] = steps.derms.sent
    assert sent.operation == "deviceOutcomeAck"
    assert ack_of(sent.body)["responseCode"] == "FAILURE"
    assert ack_of(sent.body)["value"] == FAILED.failure
    assert steps.errors.reported == [FAILED.failure]
    assert steps.notices.sent == [("FAILURE", FAILED.failure)]


async def test_an_ack_derms_will_not_take_is_tried_ack_attempts_times_then_emailed() -> None:
    steps = Steps(derms={"deviceReservationAck": {"MsgAck": {"ackType": "FAILURE"}}})

    ack_error = (await event_device_reservation.acknowledge(steps.context, RESERVATION, SENT)).error

    assert [sent.operation for sent in steps.derms.sent] == ["deviceReservationAck"] * 3
    assert ack_error == (
        "DERMS did not accept the acknowledgement after 3 tries: "
        "DERMS answered deviceReservationAck with ackType FAILURE"
    )
    assert steps.errors.reported == [ack_error]
    assert steps.notices.sent == [("FAILURE", f"{SENT_SUMMARY}\n{ack_error}")]


@pytest.mark.parametrize(
    ("flow", "operation"),
    [
        (event_device_reservation, "deviceReservationAck"),
        (event_device_outcome, "deviceOutcomeAck"),
    ],
)
async def test_an_acknowledgement_goes_again_as_it_went_with_no_other_email(
    flow: Any, operation: str
) -> None:
    first = Steps(derms={operation: {"MsgAck": {"ackType": "SUCCESS"}}})
    recorded = (await flow.acknowledge(first.context, OUTCOMES, FAILED)).msg_ack
    again = Steps(derms={operation: {"MsgAck": {"ackType": "SUCCESS"}}})

    ack_error = await flow.acknowledge_again(again.context, recorded)

    assert ack_error is None
    [sent] = again.derms.sent
    assert sent.operation == operation
    assert sent.body is not None
    assert sent.body.model_dump(mode="json", exclude_none=True) == recorded
    assert (again.errors.reported, again.notices.sent) == ([], [])


async def test_an_acknowledgement_derms_will_not_take_again_is_emailed() -> None:
    first = Steps(derms={"deviceReservationAck": {"MsgAck": {"ackType": "SUCCESS"}}})
    recorded = (
        await event_device_reservation.acknowledge(first.context, RESERVATION, SENT)
    ).msg_ack
    again = Steps(derms={"deviceReservationAck": TechnicalFault("DERMS answered HTTP 503")})

    ack_error = await event_device_reservation.acknowledge_again(again.context, recorded)

    assert ack_error == (
        "DERMS did not accept the acknowledgement after 3 tries: DERMS answered HTTP 503"
    )
    assert len(again.derms.sent) == 3
    assert again.errors.reported == [ack_error]
    assert again.notices.sent == []


def set_aside(count: int) -> FileOutcome:
    """SENT with `count` rows set aside, the first 1,000 named; even rows have no recordId."""
    named = [
        SetAsideRow(line=n + 1, record_id=str(n) if n % 2 else None, reason=f"nicId {n} is empty")
        for n in range(1, min(count, 1000) + 1)
    ]
    return FileOutcome(
        code="ERROR",
        failure=None,
        rows=250,
        segments=3,
        run=1,
        rows_set_aside=count,
        set_aside=named,
    )


async def test_rows_set_aside_are_acknowledged_error_one_response_each() -> None:
    steps = Steps(derms={"deviceReservationAck": {"MsgAck": {"ackType": "SUCCESS"}}})

    ack_error = (
        await event_device_reservation.acknowledge(steps.context, RESERVATION, set_aside(3))
    ).error

    assert ack_error is None
    [sent] = steps.derms.sent
    assert sent.body is not None
    ack = sent.body.model_dump(mode="json")["MsgAck"]
    assert ack["ackType"] == "ERROR"
    summary = (
        "250 rows in 3 segments taken by CPMCS reserveDevice (run 1); "
        "0 segments sent more than once; 3 rows set aside"
    )
    assert [(r["id"], r["value"], r["responseCode"]) for r in ack["responses"]["response"]] == [
        ("RSV-1", summary, "ERROR"),
        ("1", "line 2: nicId 1 is empty", "ERROR"),
        ("line 3", "line 3: nicId 2 is empty", "ERROR"),
        ("3", "line 4: nicId 3 is empty", "ERROR"),
    ]
    named = [
        "line 2 (recordId 1): nicId 1 is empty",
        "line 3: nicId 2 is empty",
        "line 4 (recordId 3): nicId 3 is empty",
    ]
    assert steps.errors.reported == ["; ".join([summary, *named])]
    complete = "\n".join([summary, "3 rows set aside:", *(f"  {row}" for row in named)])
    assert steps.notices.sent == [("ERROR", complete)]


async def test_the_ack_names_the_first_thousand_rows_set_aside_and_counts_the_rest() -> None:
    steps = Steps(derms={"deviceOutcomeAck": {"MsgAck": {"ackType": "SUCCESS"}}})

    await event_device_outcome.acknowledge(steps.context, OUTCOMES, set_aside(4321))

    [sent] = steps.derms.sent
    assert sent.body is not None
    responses = sent.body.model_dump(mode="json")["MsgAck"]["responses"]["response"]
    assert len(responses) == 1 + 1000 + 1
    assert responses[1000]["value"] == "line 1001: nicId 1000 is empty"
    assert (responses[-1]["id"], responses[-1]["value"]) == ("OUT-1", "3321 rows more set aside")
    [(code, email)] = steps.notices.sent
    assert code == "ERROR"
    assert email.splitlines()[-1] == "  and 4311 rows more"
    assert len(email.splitlines()) == 1 + 1 + 10 + 1


async def test_a_file_with_no_row_to_send_is_acknowledged_error() -> None:
    steps = Steps(derms={"deviceReservationAck": {"MsgAck": {"ackType": "SUCCESS"}}})
    nothing = FileOutcome(code="ERROR", failure=None, rows=0, segments=0, run=1)

    await event_device_reservation.acknowledge(steps.context, RESERVATION, nothing)

    [sent] = steps.derms.sent
    assert ack_of(sent.body) | {"responseTimeISO": None} == {
        "id": "RSV-1",
        "value": "no row to send: the file has none",
        "responseCode": "ERROR",
        "responseTimeISO": None,
        "dacsMessageId": None,
    }
