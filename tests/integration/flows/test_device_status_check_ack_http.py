"""Flow 5 through the hub's HTTP API, against the CPMCS simulator and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.sandbox.cpmcs_sim import DEVICE_STATUS_BO_STATUS
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    cpmcs_received,
    refuse_calls,
    statuses,
)

ROUTE = "/status-check-ack-to-dacs"
STATUS_PATH = "/rest/apis/cross/digitalAssets/controllableDeviceStatus/response"


def status_message(
    dacs_message_id: str = "COMM-1", response_code: str = "SUCCESS"
) -> dict[str, Any]:
    """DERMS's answer to a device status check."""
    return {
        "dacsMessageId": dacs_message_id,
        "responseCode": response_code,
        "message": "device answered",
    }


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=DERMS_AUTH)


def response_of(reply: httpx.Response) -> dict[str, Any]:
    [response] = reply.json()["MsgAck"]["responses"]["response"]
    assert isinstance(response, dict)
    return response


@pytest.mark.parametrize("response_code", ["SUCCESS", "FAILURE"])
async def test_cpmcs_gets_the_status_and_derms_its_bo_status(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink, response_code: str
) -> None:
    reply = await send(hub, status_message("COMM-1", response_code))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
    response = response_of(reply)
    assert response["responseCode"] == DEVICE_STATUS_BO_STATUS
    assert response["value"] == DEVICE_STATUS_BO_STATUS
    assert (response["id"], response["dacsMessageId"]) == ("COMM-1", "COMM-1")
    assert cpmcs_received(cpmcs_sim, "device-statuses") == [
        {"responseDetail": {"transactionID": "COMM-1", "result": {"status": response_code}}}
    ]
    assert mailbox.messages() == []


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_status_is_a_failure_ack_and_an_email(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink, status: int
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, status_message("COMM-2"))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    response = response_of(reply)
    assert response["responseCode"] == "FAILURE"
    assert response["value"] == f"CPMCS answered HTTP {status} to postControllableDeviceStatus"
    [mail] = mailbox.wait_for(1)
    assert "Device Status Check Ack" in mail.subject
    assert "communicationId: COMM-2" in mail.body_text
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["status"] == "failed"
    assert detail["error"] == response["value"]


async def test_a_timeout_is_a_failure_ack(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, status_message("COMM-3"))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    expected = "CPMCS did not answer postControllableDeviceStatus within 3 s"
    assert response_of(reply)["value"] == expected
    assert len(mailbox.wait_for(1)) == 1


async def test_a_cpmcs_that_drops_the_connection_is_a_failure_ack(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    reply = await send(hub, status_message("COMM-4"))

    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert response_of(reply)["responseCode"] == "FAILURE"
    assert len(mailbox.wait_for(1)) == 1


async def test_a_cpmcs_business_error_is_a_failure_ack_and_an_email(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    refusal = "Communication COMM-5 is not awaiting a status"
    refuse_calls(cpmcs_sim, STATUS_PATH, 10030, refusal)

    reply = await send(hub, status_message("COMM-5"))

    expected = f"CPMCS refused postControllableDeviceStatus: ERROR 10030: {refusal}"
    # The reference answers every CPMCS error status with FAILURE, a refusal included.
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert (response_of(reply)["responseCode"], response_of(reply)["value"]) == (
        "FAILURE",
        expected,
    )
    [mail] = mailbox.wait_for(1)
    assert expected in mail.body_text


async def test_one_email_per_failed_instance(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()

    first = await send(hub, status_message("COMM-6"))
    second = await send(hub, status_message("COMM-7"))

    mails = mailbox.wait_for(2)
    with pytest.raises(TimeoutError):
        mailbox.wait_for(3, timeout=0.5)
    for reply, communication_id in ((first, "COMM-6"), (second, "COMM-7")):
        [mail] = [m for m in mails if reply.headers["X-Instance-Id"] in m.body_text]
        assert f"communicationId: {communication_id}" in mail.body_text


async def test_found_by_its_communication_id(hub: HubUnderTest) -> None:
    reply = await send(hub, status_message("COMM-8"))

    found = await hub.client.get("/ops/instances", params={"key": "COMM-8"}, auth=OPERATOR_AUTH)

    [item] = found.json()["items"]
    assert item["id"] == reply.headers["X-Instance-Id"]
    assert item["flow"] == "device_status_check_ack"
    assert item["status"] == "succeeded"
    detail = await hub.detail(item["id"])
    assert detail["reply"]["MsgAck"]["responses"]["response"][0]["responseCode"] == "X1CO"
    [activity] = detail["activities"]
    assert (activity["target"], activity["operation"], activity["path"]) == (
        "CPMCS",
        "postControllableDeviceStatus",
        STATUS_PATH,
    )
    assert activity["http_status"] == 200


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dacsMessageId": "C" * 31}, "dacsMessageId"),
        ({"responseCode": "ERROR"}, "responseCode"),
    ],
)
async def test_a_value_cpmcs_could_not_take_is_refused_kept_as_rejected_and_nothing_sent(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, changes: dict[str, str], field: str
) -> None:
    reply = await send(hub, {**status_message(), **changes})

    assert reply.status_code == 422
    assert [error["field"] for error in reply.json()["errors"]] == [field]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    assert await statuses(hub.client) == ["rejected"]


async def test_only_the_derms_caller_may_send_it(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=status_message(), auth=CPMCS_AUTH)

    assert reply.status_code == 401
    assert cpmcs_received(cpmcs_sim, "device-statuses") == []
