"""Schedules on both databases: tick claims, missed ticks, no overlapping runs, run-now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from derms_bridge.engine.schedules import AlreadyRunning, Scheduler
from derms_bridge.settings import Schedule
from derms_bridge.store.schedules import ScheduleStore
from tests.conftest import OPERATOR_AUTH, HubUnderTest, derms_received

NIGHTLY_PARIS = Schedule(cron="0 2 * * *", timezone="Europe/Paris")


def scheduler(hub: HubUnderTest, schedule: Schedule = NIGHTLY_PARIS) -> Scheduler:
    """A scheduler as one hub process has it; two of them stand for two processes."""
    return Scheduler(
        engine=hub.hub.engine,
        store=ScheduleStore(hub.hub.store),
        schedules={"device_score_ftp": schedule},
        shutdown=hub.hub.shutdown,
    )


def device_score_folder(hub: HubUnderTest) -> Path:
    folder = hub.file_stores / "ftp" / "outbound" / "device-score"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_ticks_are_read_in_the_schedules_time_zone() -> None:
    # 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
    winter = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)
    assert NIGHTLY_PARIS.latest_tick(winter) == datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert NIGHTLY_PARIS.latest_tick(summer) == datetime(2026, 7, 10, 0, 0, tzinfo=UTC)
    assert NIGHTLY_PARIS.next_tick(winter).isoformat() == "2026-03-11T02:00:00+01:00"
    # A tick exactly now is due now.
    on_the_tick = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert NIGHTLY_PARIS.latest_tick(on_the_tick) == on_the_tick


async def test_a_tick_is_claimed_once_and_missed_ticks_run_once(hub: HubUnderTest) -> None:
    device_score_folder(hub)
    first, second = scheduler(hub), scheduler(hub)
    created = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    # A new schedule waits for its next tick rather than running the one before it.
    assert await first.claim_due(created) == []
    assert await first.claim_due(created + timedelta(hours=1)) == []

    after_tick = datetime(2026, 3, 11, 1, 30, tzinfo=UTC)
    [run] = await first.claim_due(after_tick)
    assert await second.claim_due(after_tick) == []
    assert await first.claim_due(after_tick) == []
    assert (await run.done).status == "skipped"

    # Down for five nights: one run, for the latest tick.
    back = datetime(2026, 3, 16, 1, 30, tzinfo=UTC)
    [late] = await second.claim_due(back)
    assert await first.claim_due(back) == []
    await late.done
    instance = await hub.detail(late.instance_id)
    assert instance["payload"] == {
        "trigger": "schedule",
        "tick": "2026-03-16T01:00:00Z",
        "cron": "0 2 * * *",
    }
    assert {"kind": "scheduleTick", "value": "2026-03-16T01:00:00Z"} in instance["business_keys"]
    page = await hub.client.get(
        "/ops/instances", params={"flow": "device_score_ftp"}, auth=OPERATOR_AUTH
    )
    assert page.json()["total"] == 2


async def test_a_run_never_overlaps_the_one_still_going(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    (device_score_folder(hub) / "SDCSE_slow.csv").write_text("takes a while")
    derms_sim.put("/_sim/faults", json={"latency_ms": 1500}).raise_for_status()
    every_minute = scheduler(hub, Schedule(cron="* * * * *"))
    now = datetime.now(UTC)
    await every_minute.claim_due(now)

    started = await hub.client.post("/ops/schedules/device_score_ftp/run", auth=OPERATOR_AUTH)
    assert started.status_code == 202
    running_id = started.json()["instanceId"]

    again = await hub.client.post("/ops/schedules/device_score_ftp/run", auth=OPERATOR_AUTH)
    assert again.status_code == 409
    assert again.json()["instanceId"] == running_id
    assert again.json()["detail"] == (
        f"device_score_ftp is already running as instance {running_id}"
    )
    # Another process's tick meanwhile is skipped, and not run later either.
    assert await every_minute.claim_due(now + timedelta(minutes=2)) == []
    with pytest.raises(AlreadyRunning):
        await every_minute.run_now("OUTL-BA-DRMS_DACS_SEND_DVCSCORE", caller="test")
    listed = (await hub.client.get("/ops/schedules", auth=OPERATOR_AUTH)).json()
    ftp = next(s for s in listed if s["flow"] == "device_score_ftp")
    assert (ftp["running"], ftp["running_instance"]) == (True, running_id)

    result = await hub.hub.scheduler.finished(running_id)

    assert result.status == "succeeded"
    assert await every_minute.claim_due(now + timedelta(minutes=2)) == []
    assert len(derms_received(derms_sim, "/device-score")) == 1
    listed = (await hub.client.get("/ops/schedules", auth=OPERATOR_AUTH)).json()
    ftp = next(s for s in listed if s["flow"] == "device_score_ftp")
    assert ftp["running"] is False
    assert ftp["last_run"]["instance_id"] == running_id
    assert ftp["last_run"]["status"] == "succeeded"


async def test_the_schedules_list_shows_each_scheduled_flow_and_the_purge(
    hub: HubUnderTest,
) -> None:
    listed = await hub.client.get("/ops/schedules", auth=OPERATOR_AUTH)

    assert listed.status_code == 200
    assert [(s["flow"], s["cron"], s["enabled"], s["last_run"]) for s in listed.json()] == [
        ("device_score_ftp", None, False, None),
        ("device_score_os", None, False, None),
        ("purge", "17 * * * *", True, None),
    ]


async def test_run_now_of_an_unknown_flow_is_404_and_needs_an_operator(
    hub: HubUnderTest,
) -> None:
    unknown = await hub.client.post("/ops/schedules/enrollment_sync/run", auth=OPERATOR_AUTH)
    stranger = await hub.client.post("/ops/schedules/device_score_ftp/run")

    assert unknown.status_code == 404
    assert unknown.json()["detail"] == (
        "no scheduled flow is called 'enrollment_sync'; "
        "the scheduled flows are device_score_ftp, device_score_os"
    )
    assert stranger.status_code == 401


async def test_the_loop_runs_each_tick_of_a_seconds_schedule(hub: HubUnderTest) -> None:
    device_score_folder(hub)
    every_second = scheduler(hub, Schedule(cron="* * * * * *"))
    stop = asyncio.Event()
    loop = asyncio.create_task(every_second.run(stop))
    await asyncio.sleep(2.5)
    stop.set()
    await loop

    page = await hub.client.get(
        "/ops/instances", params={"flow": "device_score_ftp"}, auth=OPERATOR_AUTH
    )
    assert 1 <= page.json()["total"] <= 3
    assert {i["status"] for i in page.json()["items"]} == {"skipped"}


async def test_a_run_started_now_can_be_read_as_soon_as_it_is_answered(
    hub: HubUnderTest, database_url: str
) -> None:
    device_score_folder(hub)

    started = await hub.hub.scheduler.run_now("device_score_ftp", caller="operator")
    # Read through a connection of its own, before this loop lets the run take a step.
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        status = connection.execute(
            text("SELECT status FROM instances WHERE id = :id"), {"id": started.instance_id}
        ).scalar()
    engine.dispose()

    assert status == "in_progress"
    assert (await started.done).status == "skipped"
