"""Messages refused from an authenticated caller are kept as `rejected` instances: the body as
received (cut past limits.rejected_body_bytes), the reasons, the identifiers readable in
it; found in /ops/instances, counted in /metrics, emailed once per caller in a while."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    empty_tables,
    hub_settings,
    serving,
)
from tests.integration.api.test_metrics import scrape, value
from tests.payloads import enrollment_message, enrollment_request, event_opt_out_message

PROBLEM_JSON = "application/problem+json"
SMALL_BODY_LIMIT = 2048
KEPT_BYTES = 1024


def problem_naming_an_instance(reply: httpx.Response, status: int) -> tuple[dict[str, Any], str]:
    """The problem document and the rejected instance it names."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = reply.json()
    instance_id = problem["instanceId"]
    assert reply.headers["X-Instance-Id"] == instance_id
    return problem, instance_id


def malformed_enrollment(message_id: str) -> bytes:
    """An enrollment batch cut off in the middle: not JSON, but its messageId is readable."""
    whole = json.dumps(enrollment_message(enrollment_request(message_id)))
    return whole[: whole.index(message_id) + len(message_id) + 40].encode()


async def post_raw(
    hub: HubUnderTest,
    route: str,
    body: bytes,
    auth: tuple[str, str] | None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"content-type": content_type}
    if auth is None:
        return await hub.client.post(route, content=body, headers=headers)
    return await hub.client.post(route, content=body, headers=headers, auth=auth)


async def test_malformed_json_is_a_422_and_kept_as_a_rejected_instance(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    body = malformed_enrollment("REJ-1")

    reply = await post_raw(hub, "/enroll-to-dacs", body, DERMS_AUTH)

    problem, instance_id = problem_naming_an_instance(reply, 422)
    assert problem["errors"][0]["field"] == "body"
    assert problem["errors"][0]["message"].startswith("malformed JSON")
    detail = await hub.detail(instance_id)
    assert (detail["flow"], detail["status"], detail["caller"]) == (
        "enrollment_request",
        "rejected",
        "derms",
    )
    assert detail["payload"] == {
        "receivedBody": body.decode(),
        "truncated": False,
        "contentType": "application/json",
    }
    assert detail["error"] == problem["detail"]
    assert detail["reply"] == problem
    assert {"kind": "messageId", "value": "REJ-1"} in detail["business_keys"]
    assert [item["id"] for item in await hub.found_by("REJ-1")] == [instance_id]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


async def test_a_schema_error_on_a_cpmcs_route_is_kept_with_its_reasons(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    message = event_opt_out_message("REJ-OPT-1")
    del message["sendDetails"]["deviceInfo"]

    reply = await hub.client.post("/cpmcs/outbound/X1-EPOPTOMSG", json=message, auth=CPMCS_AUTH)

    problem, instance_id = problem_naming_an_instance(reply, 422)
    assert [error["field"] for error in problem["errors"]] == ["sendDetails.deviceInfo"]
    detail = await hub.detail(instance_id)
    assert (detail["flow"], detail["status"], detail["caller"]) == (
        "customer_event_opt_out",
        "rejected",
        "cpmcs",
    )
    assert json.loads(detail["payload"]["receivedBody"]) == message
    assert detail["reply"]["errors"] == problem["errors"]
    listed = await hub.client.get(
        "/ops/instances", params={"status": "rejected"}, auth=OPERATOR_AUTH
    )
    assert [item["id"] for item in listed.json()["items"]] == [instance_id]
    assert derms_received(derms_sim) == {}


def derms_received(derms_sim: httpx.Client) -> dict[str, Any]:
    received: dict[str, Any] = derms_sim.get("/_sim/state/received").json()
    return received


async def test_a_body_that_is_not_json_is_a_415_kept_with_its_content_type(
    hub: HubUnderTest,
) -> None:
    reply = await post_raw(
        hub, "/enroll-to-dacs", b"messageId=REJ-TXT", DERMS_AUTH, content_type="text/plain"
    )

    _problem, instance_id = problem_naming_an_instance(reply, 415)
    payload = (await hub.detail(instance_id))["payload"]
    assert payload == {
        "receivedBody": "messageId=REJ-TXT",
        "truncated": False,
        "contentType": "text/plain",
    }


async def test_a_stranger_s_body_is_refused_and_not_kept(hub: HubUnderTest) -> None:
    for auth in (None, ("derms", "wrong"), CPMCS_AUTH):
        reply = await post_raw(hub, "/enroll-to-dacs", malformed_enrollment("REJ-X"), auth)
        assert reply.status_code == 401
        assert "instanceId" not in reply.json()

    listed = await hub.client.get("/ops/instances", auth=OPERATOR_AUTH)
    assert listed.json()["total"] == 0


async def test_a_rejected_instance_is_not_resubmitted_but_its_body_is_read(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await post_raw(hub, "/enroll-to-dacs", malformed_enrollment("REJ-RS"), DERMS_AUTH)
    _problem, instance_id = problem_naming_an_instance(reply, 422)

    resubmitted = await hub.client.post(
        f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH
    )

    assert resubmitted.status_code == 409
    assert "a rejected message cannot be resubmitted" in resubmitted.json()["detail"]
    assert (await hub.detail(instance_id))["payload"]["receivedBody"].startswith("{")
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


async def test_a_burst_of_rejections_is_one_email_and_each_is_counted(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    before = await scrape(hub)

    ids = []
    for n in range(5):
        reply = await post_raw(
            hub, "/enroll-to-dacs", malformed_enrollment(f"REJ-B{n}"), DERMS_AUTH
        )
        ids.append(problem_naming_an_instance(reply, 422)[1])
    reply = await hub.client.post(
        "/cpmcs/outbound/X1-EPOPTOMSG", json={"sendDetails": {}}, auth=CPMCS_AUTH
    )
    problem_naming_an_instance(reply, 422)

    after = await scrape(hub)
    finished = "derms_bridge_instances_finished_total"
    flow = "enrollment_request"
    assert (
        value(after, finished, flow=flow, status="rejected")
        - value(before, finished, flow=flow, status="rejected")
        == 5
    )
    mails = mailbox.wait_for(2)
    assert len(mails) == 2
    by_caller = {"derms" if "Caller:    derms" in m.body_text else "cpmcs": m for m in mails}
    assert set(by_caller) == {"derms", "cpmcs"}
    assert ids[0] in by_caller["derms"].body_text
    assert "rejected a message" in by_caller["derms"].subject
    assert "REJ-B0" in by_caller["derms"].body_text
    for instance_id in ids[1:]:
        assert instance_id not in by_caller["derms"].body_text


@pytest.fixture
async def small_limit_hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> AsyncIterator[HubUnderTest]:
    """A JSON body limit of 2 KiB, of which a rejected instance keeps 1 KiB."""
    empty_tables(database_url)
    settings = hub_settings(
        database_url,
        cpmcs_server.url,
        derms_server.url,
        mailbox,
        callers,
        max_json_body_bytes=SMALL_BODY_LIMIT,
        rejected_body_bytes=KEPT_BYTES,
    )
    async with serving(build_hub(settings, default_lookups)) as under_test:
        yield under_test


def too_large_batch() -> bytes:
    body = json.dumps(
        enrollment_message(*(enrollment_request(f"REJ-BIG-{n}") for n in range(8)))
    ).encode()
    assert len(body) > SMALL_BODY_LIMIT
    return body


async def test_a_body_over_the_limit_is_a_413_kept_cut_and_marked_truncated(
    small_limit_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    body = too_large_batch()

    reply = await post_raw(small_limit_hub, "/enroll-to-dacs", body, DERMS_AUTH)

    _problem, instance_id = problem_naming_an_instance(reply, 413)
    detail = await small_limit_hub.detail(instance_id)
    assert detail["status"] == "rejected"
    assert detail["payload"]["truncated"] is True
    assert detail["payload"]["receivedBody"] == body[:KEPT_BYTES].decode()
    assert {"kind": "messageId", "value": "REJ-BIG-0"} in detail["business_keys"]
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


async def test_a_chunked_body_over_the_limit_is_kept_cut_too(
    small_limit_hub: HubUnderTest,
) -> None:
    body = too_large_batch()

    async def in_chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    reply = await small_limit_hub.client.post(
        "/enroll-to-dacs",
        content=in_chunks(),
        headers={"content-type": "application/json"},
        auth=DERMS_AUTH,
    )

    _problem, instance_id = problem_naming_an_instance(reply, 413)
    payload = (await small_limit_hub.detail(instance_id))["payload"]
    assert (payload["receivedBody"], payload["truncated"]) == (
        body[:KEPT_BYTES].decode(),
        True,
    )
