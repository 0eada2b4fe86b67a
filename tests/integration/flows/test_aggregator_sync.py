"""Flows 13 and 14 through the hub's HTTP API, against both simulators and an SMTP sink."""

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
from tests.payloads import aggregator_sync_message

ROUTE = "/cpmcs/outbound/X1-GEDAGRMSG"


async def send(hub: HubUnderTest, message: dict[str, Any]) -> httpx.Response:
    return await hub.client.post(ROUTE, json=message, auth=CPMCS_AUTH)


async def test_derms_gets_the_aggregator_and_cpmcs_the_acknowledgement(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    message = aggregator_sync_message("SRA-1")

    reply = await send(hub, message)

    assert reply.status_code == 200
    assert reply.json() == {"responseDetails": {"externalId": "SRA-1"}}
    assert derms_received(derms_sim, "/update-aggregator") == [
        {"dacsMessageId": "SRA-1", "aggregator": message["sendDetails"]["aggregator"]}
    ]
    assert cpmcs_received(cpmcs_sim, "sync-requests") == [
        {"syncRequestId": "SRA-1", "body": {"syncRequestId": "SRA-1", "hasError": False}}
    ]
    assert mailbox.messages() == []


async def test_parent_and_child_are_linked_and_both_found_by_the_sync_request_id(
    hub: HubUnderTest,
) -> None:
    reply = await send(hub, aggregator_sync_message("SRA-2"))
    parent_id = reply.headers["X-Instance-Id"]

    parent = await hub.detail(parent_id)
    [child_id] = parent["children"]
    child = await hub.detail(child_id)

    assert (parent["status"], parent["flow_identifier"]) == (
        "succeeded",
        "OUTL-BA-DACS_DERMS_AGGREG_SYNC",
    )
    assert [(a["operation"], a["http_status"]) for a in parent["activities"]] == [
        ("updateAggregator", 200)
    ]
    assert (child["status"], child["parent_id"], child["flow_identifier"]) == (
        "succeeded",
        parent_id,
        "OUTL-BA-DERMS_DACS_AGGSYNC_ACK",
    )
    assert [(a["operation"], a["method"], a["http_status"]) for a in child["activities"]] == [
        ("updateSyncRequest", "PATCH", 200)
    ]
    assert {item["id"] for item in await hub.found_by("SRA-2")} == {parent_id, child_id}
    assert [item["id"] for item in await hub.found_by("AGG-1")] == [parent_id]


async def test_an_error_ack_on_http_200_is_acknowledged_with_has_error(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/ack", json={"ackType": "ERROR"}).raise_for_status()

    reply = await send(hub, aggregator_sync_message("SRA-3"))

    assert reply.json() == {"responseDetails": {"externalId": "SRA-3"}}
    [patch] = cpmcs_received(cpmcs_sim, "sync-requests")
    assert patch["body"] == {
        "syncRequestId": "SRA-3",
        "hasError": True,
        "exceptionInfo": [{"messageCategory": 11101, "messageNumber": 0, "comments": "REJECTED"}],
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

    reply = await send(hub, aggregator_sync_message("SRA-4"))

    assert reply.status_code == 502
    assert reply.json()["detail"] == f"DERMS default answered HTTP {status} to updateAggregator"
    [mail] = mailbox.wait_for(1)
    assert "Aggregator Sync (OUTL-BA-DACS_DERMS_AGGREG_SYNC)" in mail.subject
    assert "aggregatorId: AGG-1" in mail.body_text
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []


async def test_a_derms_timeout_is_a_504(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/faults", json={"latency_ms": 3500}).raise_for_status()

    reply = await send(hub, aggregator_sync_message("SRA-5"))

    assert reply.status_code == 504
    assert "did not answer updateAggregator within 3 s" in reply.json()["detail"]
    assert cpmcs_received(cpmcs_sim, "sync-requests") == []


async def test_a_failed_acknowledgement_is_a_502_with_the_child_email(
    hub: HubUnderTest, derms_sim: httpx.Client, cpmcs_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    reply = await send(hub, aggregator_sync_message("SRA-6"))

    assert reply.status_code == 502
    problem = reply.json()
    assert problem["detail"] == (
        "Aggregator Sync Ack failed: CPMCS answered HTTP 500 to updateSyncRequest"
    )
    assert len(derms_received(derms_sim, "/update-aggregator")) == 1
    [child_id] = (await hub.detail(problem["instanceId"]))["children"]
    assert (await hub.detail(child_id))["status"] == "failed"
    [mail] = mailbox.wait_for(1)
    assert "Aggregator Sync Ack (OUTL-BA-DERMS_DACS_AGGSYNC_ACK)" in mail.subject
    assert len(mailbox.messages()) == 1


async def test_a_failed_acknowledgement_resubmitted_after_cpmcs_recovers(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    reply = await send(hub, aggregator_sync_message("SRA-7"))
    [child_id] = (await hub.detail(reply.headers["X-Instance-Id"]))["children"]
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    resubmitted = await hub.client.post(f"/ops/instances/{child_id}/resubmit", auth=OPERATOR_AUTH)

    assert resubmitted.status_code == 200
    again = resubmitted.json()
    assert (again["flow"], again["status"], again["resubmit_of"]) == (
        "aggregator_sync_ack",
        "succeeded",
        child_id,
    )
    assert cpmcs_received(cpmcs_sim, "sync-requests") == [
        {"syncRequestId": "SRA-7", "body": {"syncRequestId": "SRA-7", "hasError": False}}
    ]


async def test_a_sync_request_id_cpmcs_could_not_take_back_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await send(hub, aggregator_sync_message("SRA-" + "9" * 11))

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "sendDetails.syncRequestId"
    assert derms_received(derms_sim, "/update-aggregator") == []


async def test_an_aggregator_without_its_id_is_refused(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = aggregator_sync_message("SRA-8")
    del message["sendDetails"]["aggregator"]["aggregatorId"]

    reply = await send(hub, message)

    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "sendDetails.aggregator.aggregatorId"
    assert derms_received(derms_sim, "/update-aggregator") == []


async def test_only_the_cpmcs_caller_may_send_it(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    reply = await hub.client.post(ROUTE, json=aggregator_sync_message(), auth=DERMS_AUTH)

    assert reply.status_code == 401
    assert derms_received(derms_sim, "/update-aggregator") == []


async def test_fields_the_contract_does_not_name_arrive_at_derms(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = aggregator_sync_message("SRA-X")
    message["sendDetails"]["aggregator"] |= {"capacityMw": 12.5, "portal": {"url": None}}

    reply = await send(hub, message)

    assert reply.status_code == 200
    [body] = derms_received(derms_sim, "/update-aggregator")
    assert body["aggregator"]["capacityMw"] == 12.5
    assert body["aggregator"]["portal"] == {"url": None}
