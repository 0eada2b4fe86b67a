"""Flow 4 through the hub's HTTP API, against the DERMS simulator and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import CPMCS_AUTH, DERMS_AUTH, OPERATOR_AUTH, HubUnderTest, derms_received
from tests.payloads import device_status_check_message

ROUTE = "/cpmcs/outbound/X1-CTRLDVCS"


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=CPMCS_AUTH)


async def test_derms_gets_the_device_and_cpmcs_gets_the_communication_id(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, device_status_check_message("COMM-1"))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "COMM-1"}}
    [body] = derms_received(derms_sim, "/status-check")
    assert body == {
        "dacsMessageId": "COMM-1",
        "DeviceInfo": {
            "division": "NORTH",
            "deviceType": "THERMOSTAT",
            "specification": "X1ECOBEE5",
            "headEndSystem": "ECOBEE",
            "nicid": "NIC-1",
        },
    }
    assert mailbox.messages() == []


async def test_a_200_with_ack_type_error_still_finishes_the_request(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    # The reference ends this flow on DERMS's 200 without reading the body.
    derms_sim.put("/_sim/ack", json={"ackType": "ERROR"}).raise_for_status()

    reply = await send(hub, device_status_check_message("COMM-2"))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "COMM-2"}}
    assert mailbox.messages() == []


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_status_is_a_fault_to_cpmcs_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink, status: int
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, device_status_check_message("COMM-3"))

    assert reply.status_code == 502
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert f"HTTP {status} to statusCheck" in problem["detail"]
    assert problem["instanceId"] == reply.headers["X-Instance-Id"]
    [mail] = mailbox.wait_for(1)
    assert "COMM-3" in mail.body_text
    assert "Device Status Check" in mail.subject
    detail = (
        await hub.client.get(f"/ops/instances/{problem['instanceId']}", auth=OPERATOR_AUTH)
    ).json()
    assert detail["status"] == "failed"
    assert detail["reply"]["status"] == 502


async def test_a_timeout_is_a_504_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, device_status_check_message("COMM-4"))

    assert reply.status_code == 504
    assert "did not answer statusCheck within 3 s" in reply.json()["detail"]
    assert len(mailbox.wait_for(1)) == 1


async def test_a_derms_that_drops_the_connection_is_a_502(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    reply = await send(hub, device_status_check_message("COMM-5"))

    assert reply.status_code == 502
    assert len(mailbox.wait_for(1)) == 1


async def test_found_by_its_communication_id(hub: HubUnderTest) -> None:
    reply = await send(hub, device_status_check_message("COMM-6"))

    found = await hub.client.get("/ops/instances", params={"key": "COMM-6"}, auth=OPERATOR_AUTH)

    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert (item["flow"], item["flow_identifier"]) == (
        "device_status_check",
        "OUTL-BA-DACS_DRMS_DEVICE_STATUS",
    )
    assert item["status"] == "succeeded"
    detail = (await hub.client.get(f"/ops/instances/{item['id']}", auth=OPERATOR_AUTH)).json()
    [activity] = detail["activities"]
    assert (activity["target"], activity["operation"], activity["http_status"]) == (
        "DERMS default",
        "statusCheck",
        200,
    )


async def test_a_message_without_its_communication_id_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = device_status_check_message()
    del message["sendDetails"]["communicationId"]

    reply = await send(hub, message)

    assert reply.status_code == 422
    assert [e["field"] for e in reply.json()["errors"]] == ["sendDetails.communicationId"]
    assert derms_received(derms_sim, "/status-check") == []


async def test_a_communication_id_cpmcs_could_not_take_back_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    # Flow 5 returns it as transactionID, which CPMCS limits to 30 characters.
    reply = await send(hub, device_status_check_message("C" * 31))

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "sendDetails.communicationId"
    assert derms_received(derms_sim, "/status-check") == []


async def test_only_the_cpmcs_caller_may_send_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=device_status_check_message(), auth=DERMS_AUTH)

    assert reply.status_code == 401
    assert derms_received(derms_sim, "/status-check") == []
