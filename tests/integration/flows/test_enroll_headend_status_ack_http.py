"""Flow 3 through the hub's HTTP API, against the CPMCS simulator and an SMTP sink."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import free_port
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    cpmcs_received,
    hub_against,
    refuse_calls,
    statuses,
)

ROUTE = "/enroll-ack-all-to-dacs"
ACK_PATH = "/rest/apis/cross/digitalAssets/programEnrollments/postAcknowledgement"


def ack_message(
    dacs_message_id: str = "SR-1", *, ack_type: str = "SUCCESS", head_end_status: str = "REGISTERED"
) -> dict[str, Any]:
    """DERMS's acknowledgement of an enrollment sync."""
    return {
        "dacsMessageId": dacs_message_id,
        "ackType": ack_type,
        "whenISO": "2026-11-26T12:00:00.000Z",
        "devices": [
            {"deviceId": "DEV-1", "headEndStatus": head_end_status, "message": "registered"},
            {"deviceId": "DEV-2", "headEndStatus": "DEREGISTERED", "message": "removed"},
        ],
        "errors": [],
    }


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=DERMS_AUTH)


def response_of(reply: httpx.Response) -> dict[str, Any]:
    [response] = reply.json()["MsgAck"]["responses"]["response"]
    assert isinstance(response, dict)
    return response


async def test_cpmcs_gets_the_acknowledgement_and_derms_a_success(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    message = ack_message("SR-1", ack_type="ERROR")
    message["errors"] = [{"messageNumber": 42, "message": "DEV-3 is unknown"}]

    reply = await send(hub, message)

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
    response = response_of(reply)
    assert (response["id"], response["value"], response["responseCode"]) == (
        "SR-1",
        "ACKNOWLEDGED",
        "SUCCESS",
    )
    assert cpmcs_received(cpmcs_sim, "acknowledgements") == [
        {
            "syncRequestId": "SR-1",
            "hasError": True,
            "deviceHeadendStatus": [
                {"deviceId": "DEV-1", "headEndRegistration": "D1RE", "message": "registered"},
                {"deviceId": "DEV-2", "headEndRegistration": "D1DR", "message": "removed"},
            ],
            "exceptionInfo": [
                {"messageCategory": 11101, "messageNumber": 42, "comments": "DEV-3 is unknown"}
            ],
        }
    ]
    assert mailbox.messages() == []


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_status_is_a_failure_ack_and_an_email(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink, status: int
) -> None:
    # The simulator's fault body is not CPMCS's error shape: a technical fault, not ERROR.
    cpmcs_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()

    reply = await send(hub, ack_message("SR-2"))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    response = response_of(reply)
    assert response["responseCode"] == "FAILURE"
    assert response["value"] == f"CPMCS answered HTTP {status} to postAcknowledgement"
    [mail] = mailbox.wait_for(1)
    assert "Enroll and Device Headend Status Ack" in mail.subject
    assert "syncRequestId: SR-2" in mail.body_text
    assert reply.headers["X-Instance-Id"] in mail.body_text
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["status"] == "failed"
    assert detail["error"] == response["value"]


async def test_a_timeout_is_a_failure_ack(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, ack_message("SR-3"))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert response_of(reply)["value"] == "CPMCS did not answer postAcknowledgement within 3 s"
    assert len(mailbox.wait_for(1)) == 1


async def test_a_cpmcs_that_drops_the_connection_is_a_failure_ack(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    reply = await send(hub, ack_message("SR-4"))

    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert "postAcknowledgement" in response_of(reply)["value"]
    assert len(mailbox.wait_for(1)) == 1


async def test_an_unreachable_cpmcs_is_a_failure_ack(
    database_url: str,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with hub_against(
        nowhere,
        database_url=database_url,
        derms_url=str(derms_sim.base_url),
        mailbox=mailbox,
        callers=callers,
        lookups=default_lookups,
    ) as hub:
        reply = await send(hub, ack_message("SR-5"))

    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    assert response_of(reply)["value"].startswith(f"CPMCS unreachable at {nowhere}")
    assert len(mailbox.wait_for(1)) == 1


async def test_a_cpmcs_business_error_is_an_error_ack_and_an_email(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    refusal = "Sync request is not awaiting an acknowledgement"
    refuse_calls(cpmcs_sim, ACK_PATH, 10030, refusal)

    reply = await send(hub, ack_message("SR-6"))

    detail = await hub.detail(reply.headers["X-Instance-Id"])
    expected = f"CPMCS refused postAcknowledgement: ERROR 10030: {refusal}"
    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "ERROR"
    response = response_of(reply)
    assert (response["responseCode"], response["value"]) == ("ERROR", expected)
    [mail] = mailbox.wait_for(1)
    assert expected in mail.body_text
    assert detail["status"] == "failed"
    [activity] = detail["activities"]
    assert (activity["operation"], activity["http_status"]) == ("postAcknowledgement", 400)


async def test_an_unknown_head_end_status_sends_nothing_and_names_the_lookup(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    reply = await send(hub, ack_message("SR-7", head_end_status="LOST_IN_SPACE"))

    assert reply.status_code == 200
    assert reply.json()["MsgAck"]["ackType"] == "FAILURE"
    value = response_of(reply)["value"]
    assert "OUTL-BRT-DACS_DRMS_DeviceHeadendStatus" in value
    assert "LOST_IN_SPACE" in value
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    [mail] = mailbox.wait_for(1)
    assert "LOST_IN_SPACE" in mail.body_text
    detail = await hub.detail(reply.headers["X-Instance-Id"])
    assert detail["status"] == "failed"
    assert detail["activities"] == []


async def test_one_email_per_failed_instance(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()

    first = await send(hub, ack_message("SR-8"))
    second = await send(hub, ack_message("SR-9"))

    mails = mailbox.wait_for(2)
    with pytest.raises(TimeoutError):
        mailbox.wait_for(3, timeout=0.5)
    by_instance = {
        reply.headers["X-Instance-Id"]: sync_request_id
        for reply, sync_request_id in ((first, "SR-8"), (second, "SR-9"))
    }
    for mail in mails:
        [instance_id] = [i for i in by_instance if i in mail.body_text]
        assert f"syncRequestId: {by_instance[instance_id]}" in mail.body_text


async def test_found_by_its_sync_request_id_and_each_device(hub: HubUnderTest) -> None:
    reply = await send(hub, ack_message("SR-10"))
    instance_id = reply.headers["X-Instance-Id"]

    for key in ("SR-10", "DEV-1", "DEV-2"):
        found = await hub.client.get("/ops/instances", params={"key": key}, auth=OPERATOR_AUTH)
        assert [item["id"] for item in found.json()["items"]] == [instance_id], key

    detail = await hub.detail(instance_id)
    assert detail["flow"] == "enroll_headend_status_ack"
    assert detail["flow_identifier"] == "OUTL-BA-DERMS_DACS_EN_DVSTAT_ACK"
    assert detail["status"] == "succeeded"
    assert detail["reply"]["MsgAck"]["ackType"] == "SUCCESS"
    [activity] = detail["activities"]
    assert (activity["target"], activity["operation"], activity["path"]) == (
        "CPMCS",
        "postAcknowledgement",
        ACK_PATH,
    )
    assert activity["http_status"] == 200


def _over_a_limit(field: str) -> dict[str, Any]:
    message = ack_message()
    if field == "dacsMessageId":
        message["dacsMessageId"] = "S" * 15
    elif field == "devices[0].deviceId":
        message["devices"][0]["deviceId"] = "D" * 13
    elif field == "devices[0].message":
        message["devices"][0]["message"] = "m" * 2001
    elif field == "errors[0].message":
        message["errors"] = [{"messageNumber": 1, "message": "c" * 255}]
    elif field == "errors[0].messageNumber":
        message["errors"] = [{"messageNumber": 100000, "message": "too big"}]
    elif field == "ackType":
        message["ackType"] = "MAYBE"
    return message


@pytest.mark.parametrize(
    "field",
    [
        "dacsMessageId",
        "devices[0].deviceId",
        "devices[0].message",
        "errors[0].message",
        "errors[0].messageNumber",
        "ackType",
    ],
)
async def test_a_value_cpmcs_could_not_take_is_refused_kept_as_rejected_and_nothing_sent(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, field: str
) -> None:
    reply = await send(hub, _over_a_limit(field))

    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in reply.json()["errors"]] == [field]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}
    assert await statuses(hub.client) == ["rejected"]


async def test_only_the_derms_caller_may_send_it(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=ack_message(), auth=CPMCS_AUTH)

    assert reply.status_code == 401
    assert cpmcs_received(cpmcs_sim, "acknowledgements") == []
