"""Flow 2 through the hub's HTTP API, against the DERMS simulator and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import CPMCS_AUTH, DERMS_AUTH, OPERATOR_AUTH, HubUnderTest, derms_received
from tests.payloads import enrollment_sync_message

ROUTE = "/cpmcs/outbound/X1-NMSDASMSG"


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=CPMCS_AUTH)


async def test_derms_gets_the_enrollment_and_cpmcs_gets_the_sync_request_id(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await send(hub, enrollment_sync_message("SR-1"))

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "SR-1"}}
    [body] = derms_received(derms_sim, "/enroll")
    assert body["dacsMessageId"] == "SR-1"
    assert body["subscriptionInfo"]["startDateTimeISO"] == "2026-12-01T00:00:00-05:00"
    assert body["subscriptionInfo"]["endDateTimeISO"] == "2027-12-01T00:00:00-05:00"
    assert "startDateTime" not in body["subscriptionInfo"]
    assert body["locationInfo"]["controllableDevices"][0]["deviceId"] == "DEV-1"
    assert body["contactInfo"] == {"contactId": "C-1", "cisPersonId": "1234567890"}


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_status_is_a_fault_to_cpmcs_and_an_email(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink, status: int
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, enrollment_sync_message("SR-2"))

    assert reply.status_code == 502
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert f"HTTP {status}" in problem["detail"]
    assert problem["instanceId"] == reply.headers["X-Instance-Id"]
    [mail] = mailbox.wait_for(1)
    assert "SR-2" in mail.body_text
    assert "Enrollment Sync" in mail.subject
    detail = (
        await hub.client.get(f"/ops/instances/{problem['instanceId']}", auth=OPERATOR_AUTH)
    ).json()
    assert detail["status"] == "failed"
    assert detail["reply"]["status"] == 502


async def test_a_timeout_is_a_504(hub: HubUnderTest, derms_sim: httpx.Client) -> None:
    derms_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, enrollment_sync_message("SR-3"))

    assert reply.status_code == 504
    assert "did not answer enroll within 3 s" in reply.json()["detail"]


async def test_a_derms_that_drops_the_connection_is_a_502(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    derms_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    reply = await send(hub, enrollment_sync_message("SR-4"))

    assert reply.status_code == 502
    assert len(mailbox.wait_for(1)) == 1


async def test_found_by_its_sync_request_id(hub: HubUnderTest) -> None:
    reply = await send(hub, enrollment_sync_message("SR-5"))

    found = await hub.client.get("/ops/instances", params={"key": "SR-5"}, auth=OPERATOR_AUTH)

    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert item["flow_identifier"] == "OUTL-BA-DACS_DRMS_ENROLL_SYNC"
    assert item["status"] == "succeeded"
    detail = (await hub.client.get(f"/ops/instances/{item['id']}", auth=OPERATOR_AUTH)).json()
    [activity] = detail["activities"]
    assert (activity["target"], activity["operation"], activity["http_status"]) == (
        "DERMS default",
        "enroll",
        200,
    )


async def test_a_sync_request_id_cpmcs_could_not_take_back_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await send(hub, enrollment_sync_message("SR-" + "9" * 12))

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "sendDetails.syncRequestId"
    assert derms_received(derms_sim, "/enroll") == []


async def test_only_the_cpmcs_caller_may_send_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=enrollment_sync_message(), auth=DERMS_AUTH)

    assert reply.status_code == 401
    assert derms_received(derms_sim, "/enroll") == []


async def test_a_der_registration_arrives_at_derms_with_every_field_cpmcs_sent(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    # A completed DER registration: DER details the contract does not name, at each level.
    message = enrollment_sync_message("SR-DER")
    details = message["sendDetails"]
    details["derRegistration"] = {
        "registrationId": "DER-77",
        "status": "COMPLETED",
        "interconnection": {"approvedOn": "2026-11-20", "exportLimitKw": 7.6},
    }
    details["contactInfo"]["preferredChannel"] = "SMS"
    details["subscriptionInfo"]["enrollmentChannel"] = "PORTAL"
    details["locationInfo"]["feederId"] = "FDR-12"
    device = details["locationInfo"]["controllableDevices"][0]
    device |= {
        "nameplateCapacityKw": 11.4,
        "inverter": {"make": "SOLAREDGE", "model": "SE11400H", "firmware": None},
        "storage": None,
    }

    reply = await send(hub, message)

    assert reply.status_code == 200
    [body] = derms_received(derms_sim, "/enroll")
    assert body["derRegistration"] == details["derRegistration"]
    assert body["contactInfo"]["preferredChannel"] == "SMS"
    assert body["subscriptionInfo"]["enrollmentChannel"] == "PORTAL"
    assert body["locationInfo"]["feederId"] == "FDR-12"
    assert body["locationInfo"]["controllableDevices"] == [device]
    # A resubmit sends the same: the instance kept them too.
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["payload"]["sendDetails"]["derRegistration"] == details["derRegistration"]
