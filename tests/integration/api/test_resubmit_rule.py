"""One rule for every resubmit: an instance is resubmitted once; one whose resubmit
succeeded is resolved (not failed) in the listing, the dashboard's counts and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import OPERATOR_AUTH, HubUnderTest
from tests.integration.api.test_metrics import scrape, value
from tests.integration.api.test_ops import enroll, listed_ids

FLOW = "enrollment_request"


async def resubmit(hub: HubUnderTest, instance_id: str) -> httpx.Response:
    return await hub.client.post(f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH)


async def test_a_failure_resubmitted_with_success_is_resolved_and_not_resubmitted_again(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    before = await scrape(hub)
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    first = await enroll(hub, "RULE-1")
    second = (await resubmit(hub, first)).json()["id"]
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    again = await resubmit(hub, first)
    assert again.status_code == 409
    assert f"resubmitted already, as {second}" in again.json()["detail"]
    third = await resubmit(hub, second)
    assert third.json()["status"] == "succeeded"
    twice = await resubmit(hub, second)

    assert twice.status_code == 409
    assert "which succeeded" in twice.json()["detail"]
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1
    assert set(await listed_ids(hub, status="resolved")) == {first, second}
    assert await listed_ids(hub, status="failed") == []
    assert (await hub.detail(first))["error"] is not None
    counts = await hub.hub.operations.counts_by_flow(datetime.now(UTC) - timedelta(hours=1))
    assert (counts[FLOW].resolved, counts[FLOW].failed, counts[FLOW].succeeded) == (2, 0, 1)
    after = await scrape(hub)
    resolved = "derms_bridge_instances_resolved_total"
    assert value(after, resolved, flow=FLOW) - value(before, resolved, flow=FLOW) == 2
