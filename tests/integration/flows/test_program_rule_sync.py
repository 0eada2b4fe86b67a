"""Flows 11 and 12 through the hub's HTTP API, against both simulators and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    cpmcs_received,
    derms_received,
)
from tests.payloads import program_rule, program_rule_sync_message

ROUTE = "/cpmcs/outbound/X1-GEDPGRMSG"


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=CPMCS_AUTH)


async def test_derms_gets_the_program_and_cpmcs_the_acknowledgement(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    weekend = program_rule(
        "R-2",
        cycle_frequency="X1SN",
        week_days=("X1SA", "X1SU"),
        allow_event_days="X1WE",
        max_event_hours=2.5,
    )

    reply = await send(hub, program_rule_sync_message("SRP-1", program_rule(), weekend))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "SRP-1"}}
    assert derms_received(derms_sim, "/update-program") == [
        {
            "dacsMessageId": "SRP-1",
            "program": {
                "programCode": "BYOT",
                "description": "Bring your own thermostat",
                "division": "NORTH",
                "rules": [
                    {
                        "ruleId": "R-1",
                        "cycleFrequency": "WEEKLY",
                        "maxEvents": 10,
                        "maxEventHours": 4,
                        "weekDays": ["MON", "TUE", "WED", "THU", "FRI"],
                        "allowEventDays": "WEEKDAYS",
                    },
                    {
                        "ruleId": "R-2",
                        "cycleFrequency": "SEASONAL",
                        "maxEvents": 10,
                        "maxEventHours": 2.5,
                        "weekDays": ["SAT", "SUN"],
                        "allowEventDays": "WEEKENDS",
                    },
                ],
            },
        }
    ]
    assert cpmcs_received(cpmcs_sim, "sync-requests") == [
        {"syncRequestId": "SRP-1", "body": {"syncRequestId": "SRP-1", "hasError": False}}
    ]
    assert mailbox.messages() == []


async def test_parent_and_child_are_linked_and_both_found_by_the_sync_request_id(
    hub: HubUnderTest,
) -> None:
    reply = await send(hub, program_rule_sync_message("SRP-2"))
    parent_id = reply.headers["X-Instance-Id"]

    parent = await hub.detail(parent_id)
    [child_id] = parent["children"]
    child = await hub.detail(child_id)

    assert (parent["status"], parent["parent_id"]) == ("succeeded", None)
    assert parent["flow_identifier"] == "OUTL-BA-DACS_DERMS_PROGRULE_SYNC"
    assert [(a["target"], a["operation"], a["http_status"]) for a in parent["activities"]] == [
        ("DERMS default", "updateProgram", 200)
    ]
    assert (child["status"], child["parent_id"], child["flow"]) == (
        "succeeded",
        parent_id,
        "program_rule_sync_ack",
    )
    assert child["flow_identifier"] == "OUTL-BA-DRMS_DACS_SYNC_ACK"
    assert [(a["operation"], a["method"], a["http_status"]) for a in child["activities"]] == [
        ("updateSyncRequest", "PATCH", 200)
    ]
    assert child["reply"] == {"syncRequestId": "SRP-2", "hasError": False}
    assert child["payload"]["dermsAnswer"]["MsgAck"]["ackType"] == "SUCCESS"
    assert {item["id"] for item in await hub.found_by("SRP-2")} == {parent_id, child_id}
    assert [item["id"] for item in await hub.found_by("BYOT")] == [parent_id]


async def test_an_error_ack_on_http_200_is_acknowledged_with_has_error(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/ack", json={"ackType": "ERROR"}).raise_for_status()

    reply = await send(hub, program_rule_sync_message("SRP-3"))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "SRP-3"}}
    [patch] = cpmcs_received(cpmcs_sim, "sync-requests")
    assert patch == {
        "syncRequestId": "SRP-3",
        "body": {
            "syncRequestId": "SRP-3",
            "hasError": True,
            "exceptionInfo": [
                {"messageCategory": 11101, "messageNumber": 0, "comments": "REJECTED"}
            ],
        },
    }


@pytest.mark.parametrize("status", [400, 500])
async def test_a_derms_error_status_is_a_502_and_an_email_and_no_acknowledgement(
    hub: HubUnderTest,
    derms_sim: httpx.Client,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    status: int,
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, program_rule_sync_message("SRP-4"))

    assert reply.status_code == 502
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["detail"] == f"DERMS default answered HTTP {status} to updateProgram"
    [mail] = mailbox.wait_for(1)
    assert "Program Rule Sync (OUTL-BA-DACS_DERMS_PROGRULE_SYNC)" in mail.subject
    assert "syncRequestId: SRP-4" in mail.body_text
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []
    parent = await hub.detail(problem["instanceId"])
    assert (parent["status"], parent["children"]) == ("failed", [])


async def test_a_derms_timeout_is_a_504(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, program_rule_sync_message("SRP-5"))

    assert reply.status_code == 504
    assert "did not answer updateProgram within 3 s" in reply.json()["detail"]
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []


async def test_an_unreachable_derms_is_a_502_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    reply = await send(hub, program_rule_sync_message("SRP-6"))

    assert reply.status_code == 502
    assert len(mailbox.wait_for(1)) == 1
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []


async def test_a_failed_acknowledgement_is_a_502_with_the_child_email(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    reply = await send(hub, program_rule_sync_message("SRP-7"))

    assert reply.status_code == 502
    problem = reply.json()
    assert problem["detail"] == (
        "Program Rule Sync Ack failed: CPMCS answered HTTP 500 to updateSyncRequest"
    )
    assert len(derms_received(derms_sim, "/update-program")) == 1
    parent = await hub.detail(problem["instanceId"])
    [child_id] = parent["children"]
    child = await hub.detail(child_id)
    assert (parent["status"], child["status"]) == ("failed", "failed")
    assert child["error"] == "CPMCS answered HTTP 500 to updateSyncRequest"
    # One email, from the acknowledgement that failed; the sync does not repeat it.
    [mail] = mailbox.wait_for(1)
    assert "Program Rule Sync Ack (OUTL-BA-DRMS_DACS_SYNC_ACK)" in mail.subject
    assert f"Instance:  {child_id}" in mail.body_text
    assert "syncRequestId: SRP-7" in mail.body_text
    assert len(mailbox.messages()) == 1


async def test_a_failed_acknowledgement_resubmitted_after_cpmcs_recovers(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    reply = await send(hub, program_rule_sync_message("SRP-8"))
    parent_id = reply.headers["X-Instance-Id"]
    [child_id] = (await hub.detail(parent_id))["children"]
    assert (await hub.detail(parent_id))["status"] == "failed"
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    resubmitted = await hub.client.post(f"/ops/instances/{child_id}/resubmit", auth=OPERATOR_AUTH)

    assert resubmitted.status_code == 200
    again = resubmitted.json()
    assert (again["flow"], again["status"], again["resubmit_of"]) == (
        "program_rule_sync_ack",
        "succeeded",
        child_id,
    )
    assert (await hub.detail(child_id))["resubmitted_as"] == [again["id"]]
    assert cpmcs_received(cpmcs_sim, "sync-requests") == [
        {"syncRequestId": "SRP-8", "body": {"syncRequestId": "SRP-8", "hasError": False}}
    ]
    assert again["id"] in {item["id"] for item in await hub.found_by("SRP-8")}
    parent = await hub.detail(parent_id)
    assert parent["children"] == [child_id, again["id"]]
    assert parent["status"] == "succeeded"
    assert parent["error"].startswith(f"resolved by resubmitted child {again['id']}")


@pytest.mark.parametrize(
    ("rule", "lookup", "code"),
    [
        (program_rule(cycle_frequency="X1HR"), "OUTL-BRT-DACS_DRMS_CycleFrequency", "X1HR"),
        (program_rule(week_days=("X1MO", "X1XX")), "OUTL-BRT-DACS_DRMS_WeekDay", "X1XX"),
        (program_rule(allow_event_days="X1HD"), "OUTL-BRT-DACS_DRMS_AllowEventDays", "X1HD"),
    ],
)
async def test_a_code_a_lookup_lacks_is_a_configuration_error_and_nothing_is_sent(
    hub: HubUnderTest,
    derms_sim: httpx.Client,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    rule: dict[str, Any],
    lookup: str,
    code: str,
) -> None:
    reply = await send(hub, program_rule_sync_message("SRP-9", rule))

    # No target was called, so it is no bad gateway: the hub's own configuration failed.
    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["type"] == "urn:derms-bridge:problem:configuration-error"
    assert problem["title"] == "Configuration error"
    reason = f"configuration error, no target was called: lookup {lookup} has no row for {code!r}"
    assert problem["detail"] == reason
    assert derms_received(derms_sim, "/update-program") == []
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []
    detail = await hub.detail(problem["instanceId"])
    assert (detail["status"], detail["error"]) == ("failed", reason)
    [mail] = mailbox.wait_for(1)
    assert "configuration error" in mail.subject
    assert lookup in mail.body_text


async def test_a_sync_request_id_cpmcs_could_not_take_back_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await send(hub, program_rule_sync_message("SRP-" + "9" * 11))

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "sendDetails.syncRequestId"
    assert derms_received(derms_sim, "/update-program") == []
    [kept] = await hub.found_by("SRP-" + "9" * 11)
    assert kept["status"] == "rejected"


async def test_only_the_cpmcs_caller_may_send_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=program_rule_sync_message(), auth=DERMS_AUTH)

    assert reply.status_code == 401
    assert derms_received(derms_sim, "/update-program") == []


async def test_fields_the_contract_does_not_name_arrive_at_derms(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    rule = program_rule() | {"seasonStart": "06-01", "notice": {"minutes": 30, "channel": None}}
    message = program_rule_sync_message("SRP-X", rule)
    message["sendDetails"]["program"]["category"] = "RESIDENTIAL"

    reply = await send(hub, message)

    assert reply.status_code == 200
    [body] = derms_received(derms_sim, "/update-program")
    assert body["program"]["category"] == "RESIDENTIAL"
    [sent_rule] = body["program"]["rules"]
    assert sent_rule["seasonStart"] == "06-01"
    assert sent_rule["notice"] == {"minutes": 30, "channel": None}
    assert sent_rule["weekDays"] == ["MON", "TUE", "WED", "THU", "FRI"]
