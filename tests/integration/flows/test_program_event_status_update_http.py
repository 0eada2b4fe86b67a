"""Flow 6 through the hub's HTTP API, against the CPMCS simulator and an SMTP sink on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.cpmcs_sim import PROGRAM_EVENT_LIFECYCLE_PATH, PROGRAM_EVENT_PATH
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    refuse_calls,
    statuses,
)

ROUTE = "/stage-status-to-dacs"


def stage_status(
    message_id: str, status: str, *, event: str = "E-1", stage: str = "S-1", **changes: Any
) -> dict[str, Any]:
    """One stage status as DERMS sends it; a change to None leaves the field out."""
    body: dict[str, Any] = {
        "messageId": message_id,
        "eventId": event,
        "stageId": stage,
        "programId": "BYOT",
        "eventType": "ECONOMIC",
        "stageStatus": status,
        "startDateTimeISO": "2026-12-01T14:00:00.000Z",
        "endDateTimeISO": "2026-12-01T18:00:00.000Z",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=DERMS_AUTH)


def only_response(reply: httpx.Response) -> dict[str, Any]:
    """The MsgAck's one response, with the overall ackType beside it."""
    assert reply.status_code == 200, reply.text
    ack = reply.json()["MsgAck"]
    [response] = ack["responses"]["response"]
    response["ackType"] = ack["ackType"]
    assert isinstance(response, dict)
    return response


def program_events(cpmcs_sim: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    events = cpmcs_sim.get("/_sim/state/program-events").json()
    return {(e["eventExternalIdentifier"], e["externalIdentifier"]): e for e in events}


def calls(cpmcs_sim: httpx.Client) -> dict[str, int]:
    counted: dict[str, int] = cpmcs_sim.get("/_sim/state/calls").json()
    return counted


async def test_scheduled_creates_the_program_event(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, stage_status("M-1", "SCHEDULED", eventType="RELIABILITY"))

    response = only_response(reply)
    assert (response["ackType"], response["id"], response["value"]) == ("SUCCESS", "M-1", "CREATED")
    assert response["responseCode"] == "SUCCESS"
    event = program_events(cpmcs_sim)[("E-1", "S-1")]
    assert event["status"] == "X1SD"
    assert event["created"] == {
        "eventExternalIdentifier": "E-1",
        "externalIdentifier": "S-1",
        "programExternalIdentifier": "BYOT",
        "programEventCategory": "X1RE",
        "startDateTime": "2026-12-01T14:00:00Z",
        "endDateTime": "2026-12-01T18:00:00Z",
    }
    assert mailbox.messages() == []


async def test_each_later_status_moves_the_event_and_cpmcs_keeps_the_history(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    steps = [
        ("S-1", "SCHEDULED", "CREATED"),
        ("S-1", "IN_PROGRESS", "X1IP"),
        ("S-1", "COMPLETED", "F1CO"),
        ("S-2", "SCHEDULED", "CREATED"),
        ("S-2", "CANCELLED", "F1CN"),
    ]
    for number, (stage, status, value) in enumerate(steps):
        reason = "the grid recovered" if status == "CANCELLED" else None
        reply = await send(
            hub, stage_status(f"M-{number}", status, stage=stage, cancelReason=reason)
        )
        response = only_response(reply)
        assert (response["ackType"], response["value"]) == ("SUCCESS", value), status

    events = program_events(cpmcs_sim)
    completed, cancelled = events[("E-1", "S-1")], events[("E-1", "S-2")]
    assert (completed["status"], completed["history"]) == ("F1CO", ["X1SD", "X1IP", "F1CO"])
    assert "cancelReason" not in completed
    assert (cancelled["status"], cancelled["history"]) == ("F1CN", ["X1SD", "F1CN"])
    assert cancelled["cancelReason"] == "the grid recovered"


async def test_a_scheduled_stage_cpmcs_holds_already_is_done_not_emailed(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    await send(hub, stage_status("M-1", "SCHEDULED"))

    reply = await send(hub, stage_status("M-2", "SCHEDULED"))

    response = only_response(reply)
    assert (response["ackType"], response["responseCode"]) == ("SUCCESS", "SUCCESS")
    assert response["value"] == "Program event E-1/S-1 already exists"
    assert (await hub.detail(reply.headers["X-Instance-Id"]))["status"] == "succeeded"
    assert program_events(cpmcs_sim)[("E-1", "S-1")]["history"] == ["X1SD"]
    with pytest.raises(TimeoutError):
        mailbox.wait_for(1, timeout=0.5)


async def test_a_resubmit_after_the_create_reached_cpmcs_succeeds(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 502}).raise_for_status()
    failed = await send(hub, stage_status("M-LOST", "SCHEDULED", event="E-LOST"))
    assert only_response(failed)["ackType"] == "FAILURE"
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    # The create reached CPMCS after all (a gateway lost its answer, or another attempt
    # got through): the program event is there when the operator resubmits.
    created = stage_status("M-LOST", "SCHEDULED", event="E-LOST")
    cpmcs_sim.post(
        PROGRAM_EVENT_PATH,
        json={"eventExternalIdentifier": created["eventId"], "externalIdentifier": "S-1"},
    ).raise_for_status()

    resubmitted = await hub.client.post(
        f"/ops/instances/{failed.headers['X-Instance-Id']}/resubmit", auth=OPERATOR_AUTH
    )

    assert resubmitted.status_code == 200
    new = resubmitted.json()
    assert new["status"] == "succeeded"
    assert new["reply"]["MsgAck"]["ackType"] == "SUCCESS"
    assert new["reply"]["MsgAck"]["responses"]["response"][0]["value"] == (
        "Program event E-LOST/S-1 already exists"
    )
    assert program_events(cpmcs_sim)[("E-LOST", "S-1")]["history"] == ["X1SD"]
    # The first failure was emailed; the resubmit that found the event sends nothing.
    assert len(mailbox.wait_for(1)) == 1
    with pytest.raises(TimeoutError):
        mailbox.wait_for(2, timeout=0.5)


async def send_each(hub: HubUnderTest, stage_statuses: list[str]) -> list[dict[str, Any]]:
    """Each status of stage E-1/S-1 in turn; the response DERMS got for each."""
    return [
        only_response(await send(hub, stage_status(f"M-{number}", status)))
        for number, status in enumerate(stage_statuses)
    ]


async def test_a_stage_may_complete_or_be_cancelled_straight_from_scheduled(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    # DERMS sends only the statuses its OIC_NOTIFY_STAGE_STATUSES names: IN_PROGRESS may
    # never come.
    completed = await send_each(hub, ["SCHEDULED", "COMPLETED"])
    cancelled = [
        only_response(await send(hub, stage_status(f"M-C{n}", status, stage="S-2")))
        for n, status in enumerate(["SCHEDULED", "CANCELLED"])
    ]

    assert [r["ackType"] for r in completed + cancelled] == ["SUCCESS"] * 4
    events = program_events(cpmcs_sim)
    assert events[("E-1", "S-1")]["history"] == ["X1SD", "F1CO"]
    assert events[("E-1", "S-2")]["history"] == ["X1SD", "F1CN"]
    assert mailbox.messages() == []


@pytest.mark.parametrize(
    ("earlier", "refused", "status_then"),
    [
        (["SCHEDULED", "COMPLETED"], "IN_PROGRESS", "F1CO"),
        (["SCHEDULED", "COMPLETED"], "CANCELLED", "F1CO"),
        (["SCHEDULED", "CANCELLED"], "ACTIVE", "F1CN"),
        (["SCHEDULED", "CANCELLED"], "COMPLETED", "F1CN"),
        (["SCHEDULED", "IN_PROGRESS", "CANCELLED"], "IN_PROGRESS", "F1CN"),
    ],
)
async def test_an_action_on_a_completed_or_cancelled_event_is_an_error_emailed(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    earlier: list[str],
    refused: str,
    status_then: str,
) -> None:
    await send_each(hub, earlier)
    history = program_events(cpmcs_sim)[("E-1", "S-1")]["history"]

    reply = await send(hub, stage_status("M-LATE", refused))

    response = only_response(reply)
    action = {"IN_PROGRESS": "X1IP", "ACTIVE": "X1IP", "COMPLETED": "F1CO", "CANCELLED": "F1CN"}
    expected = (
        "CPMCS refused actionProgramEvent: ERROR 10022: "
        f"Program event E-1/S-1 is {status_then}: it cannot move to {action[refused]}"
    )
    # A business result: DERMS does not retry an ERROR, as it retries a FAILURE.
    assert (response["ackType"], response["responseCode"]) == ("ERROR", "ERROR")
    assert response["value"] == expected
    assert program_events(cpmcs_sim)[("E-1", "S-1")]["history"] == history
    [mail] = mailbox.wait_for(1)
    assert expected in mail.body_text
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert (detail["status"], detail["error"]) == ("failed", expected)


@pytest.mark.parametrize(
    ("stage_statuses", "status"),
    [
        (["SCHEDULED", "IN_PROGRESS", "ACTIVE"], "X1IP"),
        (["SCHEDULED", "IN_PROGRESS", "COMPLETED", "COMPLETED"], "F1CO"),
        (["SCHEDULED", "CANCELLED", "CANCELLED"], "F1CN"),
    ],
)
async def test_a_status_cpmcs_holds_already_is_done_not_emailed(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    stage_statuses: list[str],
    status: str,
) -> None:
    # IN_PROGRESS then ACTIVE both go as X1IP; a status sent again is DERMS's resend after
    # an answer it never got.
    *_, last = await send_each(hub, stage_statuses)

    assert (last["ackType"], last["responseCode"]) == ("SUCCESS", "SUCCESS")
    assert last["value"] == f"Program event E-1/S-1 is {status} already"
    history = program_events(cpmcs_sim)[("E-1", "S-1")]["history"]
    assert history == ["X1SD", *dict.fromkeys(history[1:])]
    assert history[-1] == status
    with pytest.raises(TimeoutError):
        mailbox.wait_for(1, timeout=0.5)


@pytest.mark.parametrize(
    ("path", "status", "number", "ack_type"),
    [
        (PROGRAM_EVENT_PATH, "SCHEDULED", 10010, "ERROR"),
        (PROGRAM_EVENT_PATH, "SCHEDULED", 10020, "SUCCESS"),
        (PROGRAM_EVENT_LIFECYCLE_PATH, "CANCELLED", 10021, "ERROR"),
        (PROGRAM_EVENT_LIFECYCLE_PATH, "CANCELLED", 10023, "SUCCESS"),
    ],
)
async def test_each_business_error_cpmcs_answers_is_an_error_but_a_status_it_has(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    path: str,
    status: str,
    number: int,
    ack_type: str,
) -> None:
    refuse_calls(cpmcs_sim, path, number, f"refusal {number}")

    reply = await send(hub, stage_status("M-R", status))

    response = only_response(reply)
    assert (response["ackType"], response["responseCode"]) == (ack_type, ack_type)
    if ack_type == "SUCCESS":
        assert response["value"] == f"refusal {number}"
        with pytest.raises(TimeoutError):
            mailbox.wait_for(1, timeout=0.5)
    else:
        operation = "createProgramEvent" if status == "SCHEDULED" else "actionProgramEvent"
        expected = f"CPMCS refused {operation}: ERROR {number}: refusal {number}"
        assert response["value"] == expected
        assert expected in mailbox.wait_for(1)[0].body_text


async def abandoned_calls(cpmcs_sim: httpx.Client) -> list[dict[str, Any]]:
    """The calls the simulator found abandoned by their caller, once there is one."""
    deadline = time.monotonic() + 30
    while not (calls := cpmcs_sim.get("/_sim/faults/abandoned").json()):
        assert time.monotonic() < deadline, "the simulator never saw its caller go"
        await asyncio.sleep(0.1)
    assert isinstance(calls, list)
    return calls


async def test_a_create_whose_caller_timed_out_is_not_applied_and_the_resend_creates_it(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    timed_out = only_response(await send(hub, stage_status("M-1", "SCHEDULED")))

    assert timed_out["ackType"] == "FAILURE"
    assert timed_out["value"] == "CPMCS did not answer createProgramEvent within 3 s"
    assert await abandoned_calls(cpmcs_sim) == [
        {"method": "POST", "path": PROGRAM_EVENT_PATH, "applied": False}
    ]
    assert program_events(cpmcs_sim) == {}
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    resent = only_response(await send(hub, stage_status("M-1", "SCHEDULED")))
    assert (resent["ackType"], resent["value"]) == ("SUCCESS", "CREATED")
    assert program_events(cpmcs_sim)[("E-1", "S-1")]["history"] == ["X1SD"]
    assert len(mailbox.wait_for(1)) == 1


async def test_a_fault_setting_applies_the_timed_out_calls_and_the_resends_find_them_done(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    late = {"latency_ms": 3500, "apply_when_caller_gone": True}
    outcomes = []
    for number, status in enumerate(["SCHEDULED", "COMPLETED"]):
        cpmcs_sim.put("/_sim/faults", json=late).raise_for_status()
        timed_out = only_response(await send(hub, stage_status(f"M-{number}", status)))
        assert timed_out["ackType"] == "FAILURE", status
        [abandoned] = await abandoned_calls(cpmcs_sim)
        assert abandoned["applied"] is True
        cpmcs_sim.delete("/_sim/faults").raise_for_status()
        # DERMS sends the stage's status again, as after any FAILURE.
        outcomes.append(only_response(await send(hub, stage_status(f"M-{number}", status))))

    assert [(r["ackType"], r["value"]) for r in outcomes] == [
        ("SUCCESS", "Program event E-1/S-1 already exists"),
        ("SUCCESS", "Program event E-1/S-1 is F1CO already"),
    ]
    assert program_events(cpmcs_sim)[("E-1", "S-1")]["history"] == ["X1SD", "F1CO"]
    # Only the two timeouts were emailed.
    assert len(mailbox.wait_for(2)) == 2
    with pytest.raises(TimeoutError):
        mailbox.wait_for(3, timeout=0.5)


async def test_a_start_in_another_iso_form_goes_as_cpmcs_takes_it(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await send(
        hub,
        stage_status(
            "M-B",
            "SCHEDULED",
            startDateTimeISO="20261201T140000Z",
            endDateTimeISO="2026-W49-2T18:00:00Z",
        ),
    )

    assert only_response(reply)["ackType"] == "SUCCESS"
    created = program_events(cpmcs_sim)[("E-1", "S-1")]["created"]
    assert (created["startDateTime"], created["endDateTime"]) == (
        "2026-12-01T14:00:00Z",
        "2026-12-01T18:00:00Z",
    )


async def test_an_offset_cpmcs_cannot_take_is_refused_naming_the_field(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await send(
        hub, stage_status("M-S", "SCHEDULED", startDateTimeISO="2026-12-01T14:00:00+01:00:30")
    )

    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert error["field"] == "startDateTimeISO"
    assert "CPMCS takes whole minutes" in error["message"]
    assert calls(cpmcs_sim) == {}


async def test_an_action_on_an_unknown_event_is_an_error(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    reply = await send(hub, stage_status("M-1", "IN_PROGRESS", event="E-404"))

    response = only_response(reply)
    assert response["ackType"] == "ERROR"
    assert response["value"] == (
        "CPMCS refused actionProgramEvent: ERROR 10021: Program event E-404/S-1 does not exist"
    )
    assert len(mailbox.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("fault", "status", "expected"),
    [
        ({"status_code": 500}, "SCHEDULED", "CPMCS answered HTTP 500 to createProgramEvent"),
        # An action on an unknown event: the simulator's late answer, after this test,
        # changes no state that the next test could see.
        (
            {"latency_ms": 3500},
            "IN_PROGRESS",
            "CPMCS did not answer actionProgramEvent within 3 s",
        ),
    ],
)
async def test_a_technical_fault_is_a_failure_emailed_once(
    hub: HubUnderTest,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    fault: dict[str, int],
    status: str,
    expected: str,
) -> None:
    cpmcs_sim.put("/_sim/faults", json=fault).raise_for_status()

    reply = await send(hub, stage_status("M-F", status, event="E-FAULT"))

    response = only_response(reply)
    assert (response["ackType"], response["responseCode"]) == ("FAILURE", "FAILURE")
    assert response["value"] == expected
    [mail] = mailbox.wait_for(1)
    assert expected in mail.body_text
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["status"] == "failed"
    assert detail["error"] == expected


async def test_a_status_the_lookup_lacks_is_a_failure_and_nothing_is_sent(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, stage_status("M-1", "PAUSED"))

    response = only_response(reply)
    assert response["ackType"] == "FAILURE"
    assert response["value"] == "lookup OUTL-BRT-DACS_DRMS_StageStatus has no row for 'PAUSED'"
    assert calls(cpmcs_sim) == {}
    assert "OUTL-BRT-DACS_DRMS_StageStatus" in mailbox.wait_for(1)[0].body_text


async def test_an_event_type_the_lookup_lacks_is_a_failure_and_nothing_is_sent(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await send(hub, stage_status("M-1", "SCHEDULED", eventType="VOLCANO"))

    response = only_response(reply)
    assert response["ackType"] == "FAILURE"
    assert response["value"] == "lookup OUTL-BRT-DACS_DRMS_EventType has no row for 'VOLCANO'"
    assert calls(cpmcs_sim) == {}


@pytest.mark.parametrize(
    ("field", "limit"),
    [("eventId", 120), ("stageId", 120), ("programId", 120), ("cancelReason", 254)],
)
async def test_a_field_over_its_cpmcs_limit_is_refused_kept_as_rejected_and_nothing_is_sent(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, field: str, limit: int
) -> None:
    reply = await send(hub, stage_status("M-1", "CANCELLED", **{field: "x" * (limit + 1)}))

    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    [error] = reply.json()["errors"]
    assert error["field"] == field
    assert str(limit) in error["message"]
    assert calls(cpmcs_sim) == {}
    assert await statuses(hub.client) == ["rejected"]


async def test_a_scheduled_stage_without_its_program_is_refused(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await send(hub, stage_status("M-1", "SCHEDULED", programId=None))

    assert reply.status_code == 422
    assert "programId" in reply.json()["detail"]
    assert calls(cpmcs_sim) == {}


@pytest.mark.parametrize(
    ("kind", "value"), [("messageId", "M-7"), ("eventId", "E-7"), ("stageId", "S-7")]
)
async def test_found_by_each_business_key(hub: HubUnderTest, kind: str, value: str) -> None:
    reply = await send(hub, stage_status("M-7", "SCHEDULED", event="E-7", stage="S-7"))

    found = await hub.client.get("/ops/instances", params={"key": value}, auth=OPERATOR_AUTH)

    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert item["flow_identifier"] == "OUTL-BA-DRMS_DACS_STAGE_STAT_UPD"
    assert item["status"] == "succeeded"
    detail = await hub.detail(item["id"])
    assert (kind, value) in {(k["kind"], k["value"]) for k in detail["business_keys"]}
    [activity] = detail["activities"]
    assert (activity["target"], activity["operation"], activity["http_status"]) == (
        "CPMCS",
        "createProgramEvent",
        200,
    )


async def test_only_the_derms_caller_may_send_it(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=stage_status("M-1", "SCHEDULED"), auth=CPMCS_AUTH)

    assert reply.status_code == 401
    assert calls(cpmcs_sim) == {}
