"""Every metric that deploy/'s alert rules and Grafana dashboard read is in a live /metrics
scrape of the hub, once it has carried a few flows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from derms_bridge import metrics
from derms_bridge.bootstrap import build_hub, local_file_stores
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Schedule, ScheduledFlowKey
from derms_bridge.settings.connections import Caller
from tests.conftest import (
    DERMS_AUTH,
    OPERATOR_AUTH,
    HubUnderTest,
    empty_tables,
    hub_settings,
    serving,
)
from tests.csv_files import write_reservation_csv
from tests.integration.api.test_metrics import scrape
from tests.integration.api.test_ops import enroll
from tests.integration.engine.test_retention import age
from tests.integration.engine.test_schedules import NIGHTLY_PARIS, device_score_folder, scheduler
from tests.integration.flows.test_event_device_files import reservation
from tests.promql import (
    FROM_PROMETHEUS,
    POSTGRESQL_ONLY,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (flow, le) (rate(a_bucket{status=~"none|502", flow!="x"}[5m] offset 1h))\n'
        "/ on (flow) group_left (target) b_total * 1e3 > bool 0.5 unless c and absent(up == 1)"
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "c", "up"}


def test_the_rules_and_the_dashboard_read_metrics() -> None:
    read_by_rules = set().union(*map(metric_names, rule_expressions().values()))
    read_by_dashboard = set().union(*map(metric_names, dashboard_expressions().values()))

    assert "derms_bridge_database_writable" in read_by_rules
    assert "derms_bridge_outbound_call_duration_seconds_bucket" in read_by_dashboard
    assert {"derms_bridge_purged_rows_total", "derms_bridge_oldest_transaction_seconds"} <= (
        read_by_rules & read_by_dashboard
    )


@pytest.fixture
async def scheduled_hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[HubUnderTest]:
    """The `hub` fixture's hub, with flow 16 scheduled nightly."""
    empty_tables(database_url)
    settings = hub_settings(
        database_url, cpmcs_server.url, derms_server.url, mailbox, callers
    ).model_copy(update={"schedules": {"device_score_ftp": Schedule(cron="0 2 * * *")}})
    file_stores = tmp_path / "file-stores"
    built = build_hub(settings, default_lookups, local_file_stores(file_stores))
    async with serving(built, file_stores) as under_test:
        yield under_test


async def test_every_metric_the_rules_and_the_dashboard_read_is_scraped(
    scheduled_hub: HubUnderTest, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    hub = scheduled_hub
    await enroll(hub, "DEPLOY-1")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    failed = await enroll(hub, "DEPLOY-2")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    resubmitted = await hub.client.post(f"/ops/instances/{failed}/resubmit", auth=OPERATOR_AUTH)
    assert resubmitted.json()["status"] == "succeeded"
    uploaded = await hub.client.post(
        "/device-reservation-to-dacs",
        data={"message": json.dumps(reservation("DEPLOY-FILE"))},
        files={"file": ("devices.csv", write_reservation_csv(tmp_path / "r.csv", 10).read_bytes())},
        auth=DERMS_AUTH,
    )
    assert uploaded.status_code == 202, uploaded.text
    started = await hub.client.post("/ops/schedules/device_score_ftp/run", auth=OPERATOR_AUTH)
    assert started.status_code == 202, started.text
    await hub.hub.scheduler.finished(started.json()["instanceId"])
    expired = await enroll(hub, "DEPLOY-EXPIRED")
    await age(hub.hub, 400, [expired])
    await hub.hub.purge.run()

    scraped = {name for name, _ in await scrape(hub)}
    not_measured = set() if hub.hub.store.engine.dialect.name == "postgresql" else POSTGRESQL_ONLY

    read = {f"rule {name}": metric_names(expr) for name, expr in rule_expressions().items()} | {
        f"dashboard panel {name}": metric_names(expr)
        for name, expr in dashboard_expressions().items()
    }
    missing = {
        where: sorted(names - scraped - FROM_PROMETHEUS - not_measured)
        for where, names in read.items()
        if names - scraped - FROM_PROMETHEUS - not_measured
    }
    assert missing == {}
    assert all(read.values())


async def test_a_schedules_next_tick_is_the_first_one_no_process_handled(
    hub: HubUnderTest,
) -> None:
    nightly = scheduler(hub)
    device_score_folder(hub)
    schedules: dict[ScheduledFlowKey, Schedule] = {"device_score_ftp": NIGHTLY_PARIS}

    async def next_tick() -> datetime:
        storage = await hub.hub.storage.report()
        text = (await metrics.exposition(hub.hub.store.engine, schedules, storage)).decode()
        [family] = [
            f
            for f in text_string_to_metric_families(text)
            if f.name == "derms_bridge_schedule_next_tick_timestamp_seconds"
        ]
        [sample] = family.samples
        assert sample.labels == {"flow": "device_score_ftp"}
        return datetime.fromtimestamp(sample.value, UTC)

    # A new schedule: the ticks before it are handled; 02:00 Paris is 01:00 UTC in March.
    await nightly.claim_due(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    assert await next_tick() == datetime(2026, 3, 11, 1, 0, tzinfo=UTC)

    [run] = await nightly.claim_due(datetime(2026, 3, 11, 1, 30, tzinfo=UTC))
    await run.done

    assert await next_tick() == datetime(2026, 3, 12, 1, 0, tzinfo=UTC)
