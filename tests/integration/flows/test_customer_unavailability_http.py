"""Flow 10 through the hub's HTTP API, against the DERMS simulator and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import CPMCS_AUTH, DERMS_AUTH, OPERATOR_AUTH, HubUnderTest, derms_received
from tests.payloads import customer_unavailability_message

ROUTE = "/cpmcs/outbound/X1-CUSTUNAVL"


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=CPMCS_AUTH)


async def test_derms_gets_the_unavailability_and_cpmcs_gets_the_message_id(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, customer_unavailability_message("UNAV-1"))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "UNAV-1"}}
    [body] = derms_received(derms_sim, "/dacs-opt-out")
    assert body == {
        "dacsMessageId": "UNAV-1",
        "optOutType": "UNAVAILABILITY",
        "startDateTimeISO": "2026-12-05T13:00:00-05:00",
        "endDateTimeISO": "2026-12-05T19:00:00-05:00",
        "device": {"deviceId": "DEV-1", "nicId": "NIC-1", "headEndSystem": "ECOBEE"},
    }
    assert mailbox.messages() == []


@pytest.mark.parametrize("action", ["UPDATE", "DELETE"])
async def test_any_other_action_is_answered_skipped_and_not_sent(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink, action: str
) -> None:
    reply = await send(hub, customer_unavailability_message("UNAV-2", action=action))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "UNAV-2"}}
    assert derms_received(derms_sim, "/dacs-opt-out") == []
    found = await hub.client.get("/ops/instances", params={"key": "UNAV-2"}, auth=OPERATOR_AUTH)
    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert item["status"] == "skipped"
    assert action in item["skipped_reason"]
    assert item["error"] is None
    assert mailbox.messages() == []


async def test_ack_type_error_is_a_fault_naming_it_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/ack", json={"ackType": "ERROR"}).raise_for_status()

    reply = await send(hub, customer_unavailability_message("UNAV-3"))

    assert reply.status_code == 502
    problem = reply.json()
    assert problem["detail"] == "DERMS answered optOut with ackType ERROR: REJECTED"
    assert problem["instanceId"] == reply.headers["X-Instance-Id"]
    [mail] = mailbox.wait_for(1)
    assert "ackType ERROR: REJECTED" in mail.body_text
    assert "UNAV-3" in mail.body_text


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_status_is_a_fault_to_cpmcs_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink, status: int
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, customer_unavailability_message("UNAV-4"))

    assert reply.status_code == 502
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert f"HTTP {status} to optOut" in problem["detail"]
    assert problem["instanceId"] == reply.headers["X-Instance-Id"]
    [mail] = mailbox.wait_for(1)
    assert "UNAV-4" in mail.body_text
    assert "Customer Unavailability" in mail.subject
    detail = (
        await hub.client.get(f"/ops/instances/{problem['instanceId']}", auth=OPERATOR_AUTH)
    ).json()
    assert detail["status"] == "failed"
    assert detail["reply"]["status"] == 502


async def test_a_timeout_is_a_504_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, customer_unavailability_message("UNAV-5"))

    assert reply.status_code == 504
    assert "did not answer optOut within 3 s" in reply.json()["detail"]
    assert len(mailbox.wait_for(1)) == 1


@pytest.mark.parametrize("key", ["UNAV-6", "UA-6", "DEV-1"])
async def test_found_by_message_unavailability_or_device(hub: HubUnderTest, key: str) -> None:
    reply = await send(hub, customer_unavailability_message("UNAV-6", unavailability_id="UA-6"))

    found = await hub.client.get("/ops/instances", params={"key": key}, auth=OPERATOR_AUTH)

    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert item["flow_identifier"] == "OUTL-BA-DACS_DERMS_EVT_CUST_UNAVAIL_UPD"
    assert item["status"] == "succeeded"


async def test_a_message_without_its_unavailability_id_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = customer_unavailability_message()
    del message["sendDetails"]["unavailabilityId"]

    reply = await send(hub, message)

    assert reply.status_code == 422
    assert [e["field"] for e in reply.json()["errors"]] == ["sendDetails.unavailabilityId"]
    assert derms_received(derms_sim, "/dacs-opt-out") == []


async def test_an_add_without_its_end_is_refused_naming_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = customer_unavailability_message()
    del message["sendDetails"]["endDateTime"]

    reply = await send(hub, message)

    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert error["field"] == "sendDetails"
    assert "an ADD needs endDateTime" in error["message"]
    assert derms_received(derms_sim, "/dacs-opt-out") == []


async def test_only_the_cpmcs_caller_may_send_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=customer_unavailability_message(), auth=DERMS_AUTH)

    assert reply.status_code == 401
    assert derms_received(derms_sim, "/dacs-opt-out") == []
