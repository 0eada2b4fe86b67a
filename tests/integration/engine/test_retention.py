"""Retention's purge on both databases: what expired goes, what must stay stays, and
triggers going on beside it lose nothing. Instances are made by sending messages through
the hub, then aged by moving their times back, as the days would."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from derms_bridge.bootstrap import Hub
from derms_bridge.engine import storage
from derms_bridge.engine.purge import Purge, purge_flow
from derms_bridge.engine.schedules import Scheduler
from derms_bridge.schemas.ops import Activity
from derms_bridge.settings import Schedule
from derms_bridge.settings.retention import Keep, Retention, RetentionByOutcome
from derms_bridge.store.instances import InstanceGone, as_utc
from derms_bridge.store.retention import Expiry, RetentionStore
from derms_bridge.store.schedules import ScheduleStore
from derms_bridge.store.tables import FileJobRow, InstanceRow, ScheduleTickRow, SegmentRow
from tests.conftest import CPMCS_AUTH, DERMS_AUTH, OPERATOR_AUTH, HubUnderTest
from tests.csv_files import write_reservation_csv
from tests.payloads import customer_unavailability_message

UNAVAILABILITY = "/cpmcs/outbound/X1-CUSTUNAVL"


async def unavailability(hub: HubUnderTest, message_id: str) -> str:
    reply = await hub.client.post(
        UNAVAILABILITY, json=customer_unavailability_message(message_id), auth=CPMCS_AUTH
    )
    instance_id: str = reply.headers["X-Instance-Id"]
    return instance_id


async def rejected(hub: HubUnderTest, message_id: str) -> str:
    body = customer_unavailability_message(message_id)
    del body["sendDetails"]["deviceInfo"]
    reply = await hub.client.post(UNAVAILABILITY, json=body, auth=CPMCS_AUTH)
    assert reply.status_code == 422
    instance_id: str = reply.json()["instanceId"]
    return instance_id


async def in_progress(hub: HubUnderTest, message_id: str) -> str:
    """An instance whose process is running it still."""
    instance_id = str(uuid.uuid4())
    await hub.hub.store.create(
        instance_id=instance_id,
        flow="customer_unavailability",
        caller="cpmcs",
        payload=customer_unavailability_message(message_id),
        keys=[("messageId", message_id)],
    )
    return instance_id


async def age(hub: Hub, days: float, ids: list[str] | None = None) -> None:
    """Move the instances' times `days` back (all of them, or `ids`)."""
    shift = timedelta(days=days)
    async with hub.store.writing() as connection:
        query = select(InstanceRow.id, InstanceRow.received_at, InstanceRow.finished_at)
        if ids is not None:
            query = query.where(InstanceRow.id.in_(ids))
        for instance_id, received_at, finished_at in (await connection.execute(query)).all():
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(
                    received_at=received_at - shift,
                    finished_at=finished_at - shift if finished_at is not None else None,
                )
            )


async def found(hub: HubUnderTest, instance_id: str) -> dict[str, Any] | None:
    reply = await hub.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
    if reply.status_code == 404:
        return None
    detail: dict[str, Any] = reply.json()
    return detail


#: Where a row names an instance: (table, column).
NAMING_INSTANCES = [
    *[
        (table, "instance_id")
        for table in (
            "business_keys",
            "activities",
            "error_notices",
            "file_jobs",
            "segments",
            "staged_files",
            "staged_file_chunks",
            "schedule_ticks",
        )
    ],
    ("instances", "resubmit_of"),
    ("instances", "parent_id"),
    ("schedules", "last_instance"),
    ("schedules", "running_instance"),
]


async def naming_no_instance(hub: HubUnderTest) -> dict[str, int]:
    """Rows that name an instance that is gone, by table and column: none, whatever the
    purge removed (on SQLite its transactions leave the foreign keys unchecked)."""
    found = {}
    async with hub.hub.store.engine.connect() as connection:
        for table, column in NAMING_INSTANCES:
            dangling = await connection.scalar(
                text(
                    f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL "
                    f"AND {column} NOT IN (SELECT id FROM instances)"
                )
            )
            if dangling:
                found[f"{table}.{column}"] = dangling
    return found


def purge_of(
    hub: HubUnderTest, retention: Retention | None = None, batch_size: int = 1000
) -> Purge:
    return Purge(
        RetentionStore(hub.hub.store, batch_size),
        retention or hub.settings.retention,
        stopping=asyncio.Event(),
    )


async def test_payloads_then_instances_go_by_outcome_and_what_runs_stays(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    succeeded = await unavailability(hub, "RET-OK")
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await unavailability(hub, "RET-FAIL")
    derms_sim.delete("/_sim/faults").raise_for_status()
    refused = await rejected(hub, "RET-REJ")
    running = await in_progress(hub, "RET-RUN")

    await age(hub.hub, 8)
    report = await hub.hub.purge.run()

    assert (report.payloadsPurged, report.removed) == (1, {})
    kept = await found(hub, succeeded)
    assert kept is not None
    assert (kept["status"], kept["payload"], kept["reply"]) == ("succeeded", None, None)
    assert kept["payload_purged_at"] is not None
    assert [item["id"] for item in await hub.found_by("RET-OK")] == [succeeded]
    for untouched in (failed, refused, running):
        detail = await found(hub, untouched)
        assert detail is not None
        assert detail["payload"] is not None
        assert detail["payload_purged_at"] is None

    await age(hub.hub, 83)
    report = await hub.hub.purge.run()

    assert report.payloadsPurged == 0
    assert report.removed["instances"] == 1
    assert report.removed["business_keys"] >= 1
    assert await found(hub, succeeded) is None
    assert await hub.found_by("RET-OK") == []
    assert all([await found(hub, each) for each in (failed, refused, running)])

    await age(hub.hub, 90)
    report = await hub.hub.purge.run()

    # Deleted whole, their payloads with them: no payload emptied first.
    assert (report.payloadsPurged, report.removed["instances"]) == (0, 2)
    assert await found(hub, failed) is None
    assert await found(hub, refused) is None
    still = await found(hub, running)
    assert still is not None
    assert (still["status"], still["payload_purged_at"]) == ("in_progress", None)


async def test_payloads_of_every_flow_and_status_go_in_small_batches(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    succeeded = [await _finished(hub, f"PAY-OK-{n}") for n in range(3)]
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await unavailability(hub, "PAY-FAIL")
    derms_sim.delete("/_sim/faults").raise_for_status()
    refused = await rejected(hub, "PAY-REJ")
    async with hub.hub.store.writing() as connection:
        await connection.execute(
            update(InstanceRow)
            .where(InstanceRow.id == succeeded[0])
            .values(flow="customer_event_opt_out")
        )
    short_payloads = Retention(
        default=RetentionByOutcome(
            succeeded=Keep(payload_days=1, instance_days=90),
            failed=Keep(payload_days=1, instance_days=180),
            rejected=Keep(payload_days=1, instance_days=180),
        )
    )
    await age(hub.hub, 2)

    report = await purge_of(hub, short_payloads, batch_size=1).run()

    assert (report.payloadsPurged, report.removed) == (5, {})
    for instance_id in [*succeeded, failed, refused]:
        detail = await found(hub, instance_id)
        assert detail is not None
        assert (detail["payload"], detail["payload_purged_at"] is not None) == (None, True)


async def test_a_dry_run_counts_what_would_go_and_changes_nothing(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    await unavailability(hub, "DRY-1")
    await unavailability(hub, "DRY-2")
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await unavailability(hub, "DRY-3")
    await age(hub.hub, 100)

    [would] = await hub.hub.purge.candidates()
    again = await hub.hub.purge.candidates()

    assert (would.flow, would.outcome, would.payloads, would.instances) == (
        "customer_unavailability",
        "succeeded",
        0,
        2,
    )
    assert (would.payloadDays, would.instanceDays) == (7, 90)
    assert again == [would]
    detail = await found(hub, failed)
    assert detail is not None and detail["payload"] is not None
    assert len(await hub.found_by("DRY-1")) == 1
    assert (await hub.hub.purge.run()).removed["instances"] == 2


async def test_a_resubmit_and_the_run_it_repeats_go_together_never_one_without_the_other(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    first = await unavailability(hub, "CHAIN-1")
    again = await hub.client.post(f"/ops/instances/{first}/resubmit", auth=OPERATOR_AUTH)
    second = again.json()["id"]
    assert again.json()["status"] == "failed"

    # The first run expired, the resubmit naming it has not: both stay, the first run's
    # payload emptied.
    await age(hub.hub, 200, [first])
    report = await hub.hub.purge.run()

    assert (report.payloadsPurged, report.removed) == (1, {})
    kept = await found(hub, first)
    assert kept is not None
    assert (kept["payload"], kept["payload_purged_at"] is not None) == (None, True)

    await age(hub.hub, 200, [second])
    report = await hub.hub.purge.run()

    assert report.removed["instances"] == 2
    assert await found(hub, first) is None
    assert await found(hub, second) is None
    assert await naming_no_instance(hub) == {}


async def test_instances_that_must_stay_hold_back_none_of_those_after_them(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    named = []
    for n in range(3):
        first = await unavailability(hub, f"NAMED-{n}")
        again = await hub.client.post(f"/ops/instances/{first}/resubmit", auth=OPERATOR_AUTH)
        assert again.json()["status"] == "failed"
        named.append(first)
    going = [await unavailability(hub, f"GOING-{n}") for n in range(3)]
    # Received first, the runs that resubmits name fill the purge's first batches whole.
    await age(hub.hub, 201, named)
    await age(hub.hub, 200, going)

    report = await purge_of(hub, batch_size=2).run()

    assert report.removed["instances"] == 3
    assert [await found(hub, each) for each in going] == [None, None, None]
    for each in named:
        assert await found(hub, each) is not None
    assert await naming_no_instance(hub) == {}


async def test_a_purge_stopped_midway_holds_back_nothing_the_next_run_expires(
    hub: HubUnderTest,
) -> None:
    late = await unavailability(hub, "LATE")
    early = [await unavailability(hub, f"EARLY-{n}") for n in range(3)]
    await age(hub.hub, 200)
    now = datetime.now(UTC)
    # Received first, ended long after: expired only under the later run's cut-off.
    async with hub.hub.store.writing() as connection:
        await connection.execute(
            update(InstanceRow)
            .where(InstanceRow.id == late)
            .values(finished_at=now - timedelta(days=50))
        )
    store = RetentionStore(hub.hub.store, batch_size=2)
    flows, statuses = ("customer_unavailability",), ("succeeded",)

    # A run that stopped after its first batch, behind the first two it found.
    first = await store.delete_instances(Expiry(flows, statuses, now - timedelta(days=100)))
    # The next run's cut-off is later: its search starts from the oldest again.
    second = await store.delete_instances(Expiry(flows, statuses, now - timedelta(days=10)))

    assert (first["instances"], second["instances"]) == (2, 2)
    assert [await found(hub, each) for each in [late, *early]] == [None] * 4
    assert await naming_no_instance(hub) == {}


async def test_a_resubmit_of_an_instance_the_purge_took_names_nothing(
    hub: HubUnderTest,
) -> None:
    gone = await _finished(hub, "TAKEN-1")
    await age(hub.hub, 100)
    assert (await hub.hub.purge.run()).removed["instances"] == 1

    with pytest.raises(InstanceGone):
        await hub.hub.store.create(
            instance_id=str(uuid.uuid4()),
            flow="customer_unavailability",
            caller="operator",
            payload={},
            keys=[],
            resubmit_of=gone,
        )
    async with hub.hub.store.engine.connect() as connection:
        naming = await connection.scalar(
            select(InstanceRow.id).where(InstanceRow.resubmit_of == gone)
        )
    assert naming is None


async def test_a_failure_whose_payload_was_purged_is_not_resubmitted(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await unavailability(hub, "GONE-1")
    derms_sim.delete("/_sim/faults").raise_for_status()
    short_payloads = Retention(
        default=RetentionByOutcome(failed=Keep(payload_days=1, instance_days=180))
    )
    await age(hub.hub, 2)
    await purge_of(hub, short_payloads).run()

    refused = await hub.client.post(f"/ops/instances/{failed}/resubmit", auth=OPERATOR_AUTH)
    selected = await hub.client.get(
        "/ops/instances", params={"status": "failed"}, auth=OPERATOR_AUTH
    )

    assert refused.status_code == 409
    assert "its payload was purged on" in refused.json()["detail"]
    assert [item["id"] for item in selected.json()["items"]] == [failed]


async def test_a_files_rows_go_once_it_is_done_and_its_instance_stays_searchable(
    hub: HubUnderTest, tmp_path: Path
) -> None:
    sent = await hub.client.post(
        "/device-reservation-to-dacs",
        data={"message": _reservation_json("FILE-RET")},
        files={"file": ("r.csv", write_reservation_csv(tmp_path / "r.csv", 30).read_bytes())},
        auth=DERMS_AUTH,
    )
    assert sent.status_code == 202, sent.text
    file_id = sent.json()["instanceId"]
    while await hub.hub.workers.worker.step():
        pass
    # The operator asks for the acknowledgement again: the job is not done until it went.
    asked = await hub.client.post(f"/ops/instances/{file_id}/acknowledgement", auth=OPERATOR_AUTH)
    assert asked.status_code == 202, asked.text
    await age(hub.hub, 8)

    while_acking = await hub.hub.purge.run()

    assert while_acking.payloadsPurged == 0
    assert await _segments(hub, file_id) > 0

    while await hub.hub.workers.worker.step():
        pass
    await age(hub.hub, 8)
    done = await hub.hub.purge.run()

    assert done.payloadsPurged == 1
    assert done.removed["segments"] == await _total_segments(hub, file_id) > 0
    assert await _segments(hub, file_id) == 0
    detail = await found(hub, file_id)
    assert detail is not None
    assert (detail["status"], detail["payload"]) == ("succeeded", None)
    assert detail["file"]["total_rows"] == 30
    assert [item["id"] for item in await hub.found_by("FILE-RET")] == [file_id]

    await age(hub.hub, 90)
    assert (await hub.hub.purge.run()).removed["file_jobs"] == 1
    assert await found(hub, file_id) is None
    assert await naming_no_instance(hub) == {}


async def test_a_purge_beside_triggers_loses_none_of_them(hub: HubUnderTest) -> None:
    old = [await _finished(hub, f"OLD-{n}") for n in range(120)]
    await age(hub.hub, 100)
    purge = purge_of(hub, batch_size=10)

    async def triggers() -> list[str]:
        made = []
        for n in range(20):
            made.append(await unavailability(hub, f"NEW-{n}"))
            await asyncio.sleep(0)
        return made

    report, new = await asyncio.gather(purge.run(), triggers())

    assert report.removed["instances"] == 120
    # Deleted in batches of 10, with their payloads: none emptied first.
    assert (report.payloadsPurged, report.batches) == (0, 12)
    for instance_id in new:
        detail = await found(hub, instance_id)
        assert detail is not None
        assert (detail["status"], detail["payload_purged_at"]) == ("succeeded", None)
        assert detail["payload"]["sendDetails"]["messageId"].startswith("NEW-")
    assert [await found(hub, each) for each in old[:3]] == [None, None, None]
    page = await hub.client.get("/ops/instances", params={"limit": 500}, auth=OPERATOR_AUTH)
    assert page.json()["total"] == 20
    assert await naming_no_instance(hub) == {}


async def test_a_batch_goes_whole_whatever_size_its_slices_take(hub: HubUnderTest) -> None:
    """On SQLite a batch is removed in slices sized as the last one took; a slice grown
    between two used to skip the instances between the old size and the new one, left for
    another pass (or, where the pass removed nothing else, for the next run)."""
    old = [await _finished(hub, f"SLICED-{n}") for n in range(150)]
    await age(hub.hub, 100)

    report = await purge_of(hub, batch_size=1000).run()

    assert (report.removed["instances"], report.batches) == (150, 1)
    assert [await found(hub, each) for each in (old[0], old[75], old[-1])] == [None] * 3


async def test_the_purge_schedule_runs_once_a_tick_across_processes(hub: HubUnderTest) -> None:
    await _finished(hub, "TICK-1")
    await age(hub.hub, 100)

    def process() -> Scheduler:
        return Scheduler(
            engine=hub.hub.engine,
            store=ScheduleStore(hub.hub.store),
            schedules={"purge": Schedule(cron="17 * * * *")},
            shutdown=hub.hub.shutdown,
            flows={"purge": purge_flow(hub.hub.purge)},
        )

    first, second = process(), process()
    created = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert await first.claim_due(created) == []
    after_tick = datetime(2026, 3, 10, 13, 20, tzinfo=UTC)

    [run] = await first.claim_due(after_tick)
    assert await second.claim_due(after_tick) == []
    result = await run.done

    assert result.status == "succeeded"
    instance = await found(hub, run.instance_id)
    assert instance is not None
    assert instance["flow"] == "purge"
    assert instance["reply"]["removed"]["instances"] == 1
    assert instance["reply"]["payloadsPurged"] == 0
    listed = (await hub.client.get("/ops/schedules", auth=OPERATOR_AUTH)).json()
    purge = next(each for each in listed if each["flow"] == "purge")
    assert purge["last_run"]["instance_id"] == run.instance_id


async def test_what_a_purge_removed_is_counted_in_the_metrics(hub: HubUnderTest) -> None:
    before = _purged_rows(await _metrics(hub), "instances", "instance")
    await _finished(hub, "METRIC-1")
    await _finished(hub, "METRIC-2")
    await age(hub.hub, 100)

    await hub.hub.purge.run()

    assert _purged_rows(await _metrics(hub), "instances", "instance") == before + 2


async def _metrics(hub: HubUnderTest) -> str:
    reply = await hub.client.get("/metrics", auth=OPERATOR_AUTH)
    assert reply.status_code == 200
    return reply.text


def _purged_rows(text: str, table: str, kind: str) -> float:
    wanted = f'derms_bridge_purged_rows_total{{kind="{kind}",table="{table}"}} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.removeprefix(wanted))
    return 0.0


async def _finished(hub: HubUnderTest, message_id: str) -> str:
    """A succeeded instance, written as a run writes it, without calling anyone."""
    instance_id = await in_progress(hub, message_id)
    await hub.hub.store.finish(
        instance_id,
        status="succeeded",
        reply={"responseDetails": {"externalId": message_id}},
        error=None,
        activities=[
            Activity(
                target="DERMS default",
                operation="optOut",
                method="POST",
                path="/dacs-opt-out",
                http_status=200,
                duration_ms=3.0,
                error=None,
                at=datetime.now(UTC),
            )
        ],
        keys=[],
    )
    return instance_id


def _reservation_json(message_id: str) -> str:
    import json

    return json.dumps(
        {
            "drmsInstanceId": "DRMS-7",
            "messageId": message_id,
            "eventId": "EV-1",
            "stageId": "ST-1",
            "eventType": "ECONOMIC",
            "eventStartDateTime": "2026-12-01T14:00:00Z",
            "eventEndDateTime": "2026-12-01T18:00:00Z",
        }
    )


async def _segments(hub: HubUnderTest, instance_id: str) -> int:
    async with hub.hub.store.engine.connect() as connection:
        rows = await connection.scalars(
            select(SegmentRow.id).where(SegmentRow.instance_id == instance_id)
        )
        return len(rows.all())


async def _total_segments(hub: HubUnderTest, instance_id: str) -> int:
    async with hub.hub.store.engine.connect() as connection:
        total = await connection.scalar(
            select(FileJobRow.total_segments).where(FileJobRow.instance_id == instance_id)
        )
    return int(total or 0)


async def test_the_metrics_show_the_storage_measured_at_most_once_a_minute(
    hub: HubUnderTest,
) -> None:
    for n in range(3):
        await _finished(hub, f"SIZE-{n}")
    await age(hub.hub, 100)

    first = await _metrics(hub)
    late = await _finished(hub, "SIZE-LATE")
    await age(hub.hub, 100, [late])
    second = await _metrics(hub)

    assert _gauge(first, "derms_bridge_database_bytes") > 0
    assert _gauge(first, 'derms_bridge_table_bytes{table="instances"}') > 0
    assert _gauge(first, 'derms_bridge_purge_waiting{kind="instances"}') == 3
    assert (
        _gauge(first, "derms_bridge_oldest_instance_timestamp_seconds")
        < (datetime.now(UTC) - timedelta(days=99)).timestamp()
    )
    autovacuum = await server_autovacuum(hub.hub.store.engine)
    if autovacuum is not None:
        assert _gauge(first, "derms_bridge_oldest_transaction_seconds") >= 0
        assert _gauge(first, 'derms_bridge_table_dead_rows{table="instances"}') >= 0
        assert _gauge(first, "derms_bridge_database_autovacuum") == (autovacuum == "on")
    else:
        assert "derms_bridge_database_autovacuum" not in first
    # Measured again only a minute later: the same figures.
    assert _gauge(second, 'derms_bridge_purge_waiting{kind="instances"}') == 3


async def server_autovacuum(engine: AsyncEngine) -> str | None:
    """What the PostgreSQL server says of its autovacuum ("on", "off"); None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        return str(await connection.scalar(text("SHOW autovacuum")))


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.removeprefix(name + " "))
    raise AssertionError(f"{name} is not in the scrape")


async def test_skipped_schedule_ticks_go_once_their_flows_history_would(hub: HubUnderTest) -> None:
    now = datetime.now(UTC)
    longest = max(
        hub.settings.retention.keep("purge", outcome).instance_days
        for outcome in ("succeeded", "failed", "rejected")
    )
    old, recent = now - timedelta(days=longest + 1), now - timedelta(days=longest - 1)
    async with hub.hub.store.writing() as connection:
        for tick in (old, recent):
            await connection.execute(
                insert(ScheduleTickRow).values(
                    flow="purge",
                    tick=tick,
                    owner="an earlier process",
                    claimed_at=tick,
                    skipped="run R-1 was still going",
                )
            )

    assert await hub.hub.purge.skipped_ticks_waiting(now) == 1
    report = await hub.hub.purge.run(now)

    assert report.removed.get("schedule_ticks") == 1
    async with hub.hub.store.engine.connect() as connection:
        left = (await connection.scalars(select(ScheduleTickRow.tick))).all()
    assert [as_utc(tick) for tick in left] == [recent]
    assert await hub.hub.purge.skipped_ticks_waiting(now) == 0


async def test_a_measure_older_than_a_minute_is_shown_while_the_next_is_taken(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MEASURED_EVERY", timedelta(0))
    await _finished(hub, "STALE-1")
    await age(hub.hub, 100)
    first = await hub.hub.storage.report()
    late = await _finished(hub, "STALE-LATE")
    await age(hub.hub, 100, [late])

    shown = await hub.hub.storage.report()
    deadline = asyncio.get_running_loop().time() + 60
    latest = shown
    while latest.purge_waiting["instances"] != 2:
        assert asyncio.get_running_loop().time() < deadline, "no measure was taken again"
        await asyncio.sleep(0.05)
        latest = await hub.hub.storage.report()

    assert first.purge_waiting["instances"] == 1
    assert shown is first
    assert latest.measured_at > first.measured_at


async def test_on_sqlite_whole_instances_are_searched_in_the_order_of_their_index(
    hub: HubUnderTest,
) -> None:
    """SQLite's purge reads the expired instances by the index of received_at, in the order
    the search gives them back. Left to choose, the planner took the index of status and
    received_at and sorted every expired instance for each batch: 290 ms a batch with 60
    days expired on 1,000,000 instances, against 2 ms (bench/README.md)."""
    engine = hub.hub.store.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner; PostgreSQL's search is planned by its statistics")
    for n in range(3):
        await unavailability(hub, f"OLD-{n}")
    await age(hub.hub, 200)
    searches: list[tuple[str, Any]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT instances.id, instances.received_at"):
            searches.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        removed = await RetentionStore(hub.hub.store, batch_size=2).delete_instances(
            Expiry(("customer_unavailability",), ("succeeded",), datetime.now(UTC))
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)

    assert removed["instances"] == 2
    assert searches, "no search of whole instances was seen"
    async with engine.connect() as connection:
        for statement, parameters in searches:
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps = [step for *_, step in plan.all()]
            assert any("INDEX ix_instances_received_flow_status" in step for step in steps), steps
            assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps
