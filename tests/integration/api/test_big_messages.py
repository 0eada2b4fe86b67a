"""A JSON message of 256 KiB or more is read and validated by the hub's worker process, not
on the event loop, and answered exactly as a small one would be."""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from derms_bridge.engine.big_messages import OFF_LOOP_BYTES
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, HubUnderTest
from tests.payloads import enrollment_message, enrollment_request


def with_assets(message_id: str, assets: int) -> dict[str, Any]:
    """An enrollment of `assets` devices (DERMS sends up to 100): about 190 bytes each."""
    record = enrollment_request(message_id)
    first = record["assetInfo"]["assetList"][0]
    record["assetInfo"]["assetList"] = [
        dict(first, sequence=n, assetId=f"T-{message_id}-{n}") for n in range(1, assets + 1)
    ]
    return record


async def post(hub: HubUnderTest, body: bytes) -> httpx.Response:
    return await hub.client.post(
        "/enroll-to-dacs",
        content=body,
        headers={"Content-Type": "application/json"},
        auth=DERMS_AUTH,
    )


async def big_messages_read(hub: HubUnderTest) -> float:
    scraped = await hub.client.get("/metrics", auth=OPERATOR_AUTH)
    [family] = [
        f
        for f in text_string_to_metric_families(scraped.text)
        if f.name == "derms_bridge_big_messages_read"
    ]
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


def padded(body: bytes) -> bytes:
    """The same JSON, made big by white space before its end."""
    return body[:-1] + b" " * OFF_LOOP_BYTES + body[-1:]


async def test_a_big_batch_is_read_off_the_loop_and_enrolled(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    ids = [f"M-BIG-{n}" for n in range(16)]
    body = json.dumps(enrollment_message(*(with_assets(i, 100) for i in ids))).encode()
    assert len(body) >= OFF_LOOP_BYTES
    before = await big_messages_read(hub)

    reply = await post(hub, body)

    assert reply.status_code == 200, reply.text
    assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
    responses = reply.json()["MsgAck"]["responses"]["response"]
    assert [r["id"] for r in responses] == ids
    kept = cpmcs_sim.get("/_sim/state/enrollments").json()
    assert len(kept[0]["body"]["assetInfo"]["assetList"]) == 100
    assert await big_messages_read(hub) == before + 1


async def test_a_big_message_is_refused_as_a_small_one_is(hub: HubUnderTest) -> None:
    no_instance = enrollment_message(enrollment_request("M-1"), enrollment_request("M-2"))
    del no_instance["drmsInstanceId"]
    no_instance["enrollmentRequests"][1] = "not an object"
    small = json.dumps(no_instance).encode()
    before = await big_messages_read(hub)

    answers = [await post(hub, body) for body in (small, padded(small))]

    assert [a.status_code for a in answers] == [422, 422]
    small_problem, big_problem = (a.json() for a in answers)
    assert big_problem["errors"] == small_problem["errors"]
    assert {e["field"] for e in big_problem["errors"]} >= {"drmsInstanceId"}
    assert (await hub.detail(big_problem["instanceId"]))["status"] == "rejected"
    assert await big_messages_read(hub) == before + 1


async def test_big_bodies_that_are_not_json_the_hub_reads_are_named_as_small_ones(
    hub: HubUnderTest,
) -> None:
    broken = [
        b'{"drmsInstanceId": "x", "enrollmentRequests": [}',
        b'{"drmsInstanceId": "\xff\xfe", "enrollmentRequests": []}',
        b'{"drmsInstanceId": "x", "enrollmentRequests": [' + b"9" * 5000 + b"]}",
        b"[" * 10_000 + b"]" * 10_000,
    ]
    for body in broken:
        small, big = await post(hub, body), await post(hub, padded(body))

        assert (small.status_code, big.status_code) == (422, 422)
        assert big.json()["errors"] == small.json()["errors"]
        assert big.json()["errors"][0]["message"].startswith("malformed JSON")
