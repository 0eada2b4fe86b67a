"""/metrics as Prometheus scrapes it: flows, outbound calls, segments waiting, schedule runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from derms_bridge import metrics
from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.settings import Metrics
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, HubUnderTest
from tests.csv_files import write_reservation_csv
from tests.integration.api.test_ops import enroll
from tests.integration.flows.test_event_device_files import reservation

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(hub: HubUnderTest) -> Samples:
    reply = await hub.client.get("/metrics", auth=OPERATOR_AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_flows_and_their_calls_are_counted(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    before = await scrape(hub)
    await enroll(hub, "MET-1")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await enroll(hub, "MET-2")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    after = await scrape(hub)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    flow = "enrollment_request"
    assert grew("derms_bridge_instances_received_total", flow=flow) == 2
    assert grew("derms_bridge_instances_finished_total", flow=flow, status="succeeded") == 1
    assert grew("derms_bridge_instances_finished_total", flow=flow, status="failed") == 1
    assert grew("derms_bridge_instance_duration_seconds_count", flow=flow) == 2
    assert value(after, "derms_bridge_instances_running", flow=flow) == 0
    calls = "derms_bridge_outbound_calls_total"
    assert grew(calls, target="CPMCS", operation="enrollProgram", status="200") == 1
    assert grew(calls, target="CPMCS", operation="enrollProgram", status="503") == 1


async def test_segments_waiting_are_read_from_the_store(hub: HubUnderTest, tmp_path: Path) -> None:
    flow = "event_device_reservation"
    csv_file = write_reservation_csv(tmp_path / "r.csv", 2500)
    reply = await hub.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(reservation("MET-FILE"))},
        files={"file": ("devices.csv", csv_file.read_bytes(), "text/csv")},
        auth=DERMS_AUTH,
    )
    assert reply.status_code == 202, reply.text
    before = await scrape(hub)
    # No worker runs in this process until the test turns it: the three segments wait.
    assert value(before, "derms_bridge_segments_queued", flow=flow) == 3
    assert value(before, "derms_bridge_segments_in_flight", flow=flow) == 0

    while await hub.hub.workers.worker.step():
        pass
    after = await scrape(hub)

    assert value(after, "derms_bridge_segments_queued", flow=flow) == 0
    finished = "derms_bridge_instances_finished_total"
    assert (
        value(after, finished, flow=flow, status="succeeded")
        - value(before, finished, flow=flow, status="succeeded")
        == 1
    )
    calls = "derms_bridge_outbound_calls_total"
    assert (
        value(after, calls, target="CPMCS", operation="reserveDevice", status="200")
        - value(before, calls, target="CPMCS", operation="reserveDevice", status="200")
        == 3
    )


async def test_schedule_runs_are_counted_by_flow_and_outcome(hub: HubUnderTest) -> None:
    before = await scrape(hub)
    metrics.schedule_run_finished("device_score_ftp_transfer", "succeeded")
    after = await scrape(hub)

    name = "derms_bridge_schedule_runs_total"
    labels = {"flow": "device_score_ftp_transfer", "outcome": "succeeded"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


async def test_metrics_need_an_operator_or_the_scraper_token(hub: HubUnderTest) -> None:
    assert (await hub.client.get("/metrics")).status_code == 401
    assert (await hub.client.get("/metrics", auth=DERMS_AUTH)).status_code == 401

    token = "scraper-token-for-tests"
    settings = hub.settings.model_copy(
        update={"metrics": Metrics(token_sha256=hashlib.sha256(token.encode()).hexdigest())}
    )
    built = build_hub(settings, hub.hub.lookups())
    transport = httpx.ASGITransport(app=create_app(built, run_workers=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/metrics", headers=bearer)).status_code == 200
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        # The scraper's token opens /metrics only.
        assert (await client.get("/ops/instances", headers=bearer)).status_code == 401
    await built.aclose()
