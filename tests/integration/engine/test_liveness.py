"""Runs whose hub process stopped are failed and emailed about, on both databases.

A process that was killed leaves in the database what these tests write: its row in
hub_processes, last heard from some time ago, and its instances in progress naming it.
tests/e2e/test_schedule_processes.py kills a real `derms-bridge run` mid-run.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import update

from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.store.instances import utcnow
from derms_bridge.store.processes import ProcessStore
from derms_bridge.store.tables import HubProcessRow
from tests.conftest import OPERATOR_AUTH, HubUnderTest

DEAD = "gone-host:4242:dead01"
ALIVE = "other-host:777:live01"


async def a_run(hub: HubUnderTest, runner: str | None, message_id: str) -> str:
    """An opt-out in progress, as the process `runner` left it."""
    instance_id = str(uuid.uuid4())
    await hub.hub.store.create(
        instance_id=instance_id,
        flow="customer_event_opt_out",
        caller="derms",
        payload={"messageId": message_id},
        keys=[("messageId", message_id)],
        runner=runner,
    )
    return instance_id


async def last_heard(hub: HubUnderTest, name: str, ago: timedelta) -> None:
    processes = ProcessStore(hub.hub.store)
    await processes.beat(name, "serve")
    async with hub.hub.store.writing() as connection:
        await connection.execute(
            update(HubProcessRow).where(HubProcessRow.name == name).values(seen_at=utcnow() - ago)
        )


async def test_the_runs_of_a_process_not_heard_from_are_failed_and_emailed_once(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    await last_heard(hub, DEAD, timedelta(minutes=2))
    abandoned = await a_run(hub, DEAD, "OPT-DEAD-1")

    [given_up] = await hub.hub.liveness.give_up_stopped()

    assert given_up.instance_id == abandoned
    detail = await hub.detail(abandoned)
    assert detail["status"] == "failed"
    assert detail["error"] == (
        f"the hub process running it ({DEAD}) stopped before the run ended; "
        "resubmit it, or run it again"
    )
    [mail] = mailbox.wait_for(1)
    assert abandoned in mail.body_text
    assert "messageId: OPT-DEAD-1" in mail.body_text
    assert DEAD in mail.subject
    # The process is forgotten: nothing is given up, nor emailed, twice.
    assert await hub.hub.liveness.give_up_stopped() == []
    await asyncio.sleep(0.3)
    assert len(mailbox.messages()) == 1


async def test_live_processes_runs_and_the_workers_instances_are_left_going(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    await last_heard(hub, ALIVE, timedelta(seconds=5))
    live = await a_run(hub, ALIVE, "OPT-LIVE-1")
    # A received file's instance: its workers' leases hand it on, no process owns it.
    by_workers = await a_run(hub, None, "OPT-WORKERS-1")

    assert await hub.hub.liveness.give_up_stopped() == []

    assert (await hub.detail(live))["status"] == "in_progress"
    assert (await hub.detail(by_workers))["status"] == "in_progress"
    assert mailbox.messages() == []


async def test_a_process_that_stops_has_what_it_left_going_given_up_at_once(
    hub: HubUnderTest,
) -> None:
    stopping = hub.hub.liveness
    stop = asyncio.Event()
    beating = asyncio.create_task(stopping.run(stop))
    cut_short = await a_run(hub, stopping.name, "OPT-SHUTDOWN-1")
    await asyncio.sleep(0.2)
    assert (await hub.detail(cut_short))["status"] == "in_progress"

    stop.set()
    await beating

    # Another process's next heartbeat, without waiting for the silence.
    [given_up] = await ProcessStore(hub.hub.store).give_up_runs(utcnow() - timedelta(minutes=1))
    assert given_up.instance_id == cut_short
    assert (await hub.detail(cut_short))["status"] == "failed"


async def test_a_process_back_from_a_long_pause_keeps_its_new_runs(
    hub: HubUnderTest, mailbox: SmtpSink
) -> None:
    await last_heard(hub, DEAD, timedelta(minutes=2))
    before_the_pause = await a_run(hub, DEAD, "OPT-PAUSED-1")
    [given_up] = await hub.hub.liveness.give_up_stopped()
    assert given_up.instance_id == before_the_pause

    # Its next heartbeat writes it again; what it runs from then on is its own.
    await ProcessStore(hub.hub.store).beat(DEAD, "serve")
    after_the_pause = await a_run(hub, DEAD, "OPT-PAUSED-2")

    assert await hub.hub.liveness.give_up_stopped() == []
    assert (await hub.detail(after_the_pause))["status"] == "in_progress"


async def test_the_operations_api_lists_the_processes_heard_from(hub: HubUnderTest) -> None:
    await last_heard(hub, ALIVE, timedelta(seconds=5))
    await last_heard(hub, DEAD, timedelta(minutes=2))
    stopped = ProcessStore(hub.hub.store)
    await stopped.beat("old-host:1:gone01", "worker")
    await stopped.stopped("old-host:1:gone01")

    listed = await hub.client.get("/ops/processes", auth=OPERATOR_AUTH)
    stranger = await hub.client.get("/ops/processes")

    assert listed.status_code == 200
    [alive] = listed.json()
    assert (alive["name"], alive["command"]) == (ALIVE, "serve")
    assert set(alive) == {"name", "command", "started_at", "seen_at"}
    assert stranger.status_code == 401
