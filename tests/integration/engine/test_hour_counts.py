"""The dashboard's counts kept per hour, flow and status, on both databases: after every
path that writes an instance (a flow's run, a rejection, a resubmit that resolves, a
file's run, a run given up, times moved, the purge) they are the instances grouped by
hour, flow and status; PostgreSQL's writers and folds at once lose none and wait on none
in a circle."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from derms_bridge.store.database import open_engine
from derms_bridge.store.hour_counts import counts_by_hour, fold_changes
from derms_bridge.store.instances import InstanceStore, as_utc
from derms_bridge.store.tables import InstanceHourCountRow, InstanceRow, instance_count_changes
from tests.conftest import CPMCS_AUTH, DERMS_AUTH, OPERATOR_AUTH, HubUnderTest
from tests.csv_files import write_reservation_csv
from tests.integration.engine.test_liveness import a_run, last_heard
from tests.integration.engine.test_retention import (
    _finished,
    _reservation_json,
    age,
    in_progress,
    rejected,
    unavailability,
)
from tests.payloads import customer_unavailability_message

Key = tuple[datetime, str, str]
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def _hour(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


async def grouped(store: InstanceStore) -> dict[Key, int]:
    """The instances, grouped by hour of receipt, flow and status."""
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            select(InstanceRow.received_at, InstanceRow.flow, InstanceRow.status)
        )
        return dict(Counter((_hour(at), flow, status) for at, flow, status in rows))


async def kept(store: InstanceStore) -> dict[Key, int]:
    """What the dashboard reads: every hour since long ago."""
    return {
        (each.hour, each.flow, each.status): each.count
        for each in await counts_by_hour(store, LONG_AGO)
    }


async def folded(store: InstanceStore) -> dict[Key, int]:
    """The counts table alone, after a fold: no change is left, no count of 0 stays, and
    the instances in progress are not in it."""
    assert await fold_changes(store)
    async with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            assert (await connection.execute(select(instance_count_changes))).all() == []
        rows = (
            await connection.execute(
                select(
                    InstanceHourCountRow.hour,
                    InstanceHourCountRow.flow,
                    InstanceHourCountRow.status,
                    InstanceHourCountRow.count,
                )
            )
        ).all()
    assert all(count > 0 for *_, count in rows)
    return {(as_utc(hour), flow, status): count for hour, flow, status, count in rows}


def ended(counts: dict[Key, int]) -> dict[Key, int]:
    return {key: count for key, count in counts.items() if key[2] != "in_progress"}


async def assert_counted(store: InstanceStore) -> None:
    expected = await grouped(store)
    assert await kept(store) == expected
    assert await folded(store) == ended(expected)
    assert await kept(store) == expected


async def test_every_path_that_writes_an_instance_keeps_the_counts(
    hub: HubUnderTest, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    store = hub.hub.store
    succeeded = await unavailability(hub, "COUNT-OK")
    skipped = await hub.client.post(
        "/cpmcs/outbound/X1-CUSTUNAVL",
        json=customer_unavailability_message("COUNT-SKIP", action="DELETE"),
        auth=CPMCS_AUTH,
    )
    assert (await hub.detail(skipped.headers["X-Instance-Id"]))["status"] == "skipped"
    await rejected(hub, "COUNT-REJ")
    await in_progress(hub, "COUNT-RUN")
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    failed = await unavailability(hub, "COUNT-FAIL")
    derms_sim.delete("/_sim/faults").raise_for_status()
    await assert_counted(store)
    statuses = {status for _, _, status in await grouped(store)}
    assert statuses == {"succeeded", "skipped", "failed", "rejected", "in_progress"}

    # A resubmit that succeeds: a new instance, and the failed one resolved.
    resubmitted = await hub.client.post(f"/ops/instances/{failed}/resubmit", auth=OPERATOR_AUTH)
    assert resubmitted.json()["status"] == "succeeded"
    assert (await hub.detail(failed))["status"] == "resolved"
    await assert_counted(store)

    # A file's run: received in progress, finished by the workers.
    sent = await hub.client.post(
        "/device-reservation-to-dacs",
        data={"message": _reservation_json("COUNT-FILE")},
        files={"file": ("r.csv", write_reservation_csv(tmp_path / "r.csv", 30).read_bytes())},
        auth=DERMS_AUTH,
    )
    assert sent.status_code == 202, sent.text
    await assert_counted(store)
    while await hub.hub.workers.worker.step():
        pass
    assert (await hub.detail(sent.json()["instanceId"]))["status"] == "succeeded"
    await assert_counted(store)

    # A run whose process stopped, given up as failed.
    await last_heard(hub, "gone-host:1:count", timedelta(minutes=5))
    abandoned = await a_run(hub, "gone-host:1:count", "COUNT-GONE")
    await assert_counted(store)
    assert [run.instance_id for run in await hub.hub.liveness.give_up_stopped()] == [abandoned]
    await assert_counted(store)

    # Times moved back (into other hours), payloads purged, then the instances themselves.
    await age(hub.hub, 3, [succeeded])
    await assert_counted(store)
    await age(hub.hub, 8)
    assert (await hub.hub.purge.run()).payloadsPurged > 0
    await assert_counted(store)
    await age(hub.hub, 200)
    assert (await hub.hub.purge.run()).removed["instances"] > 0
    await assert_counted(store)


async def test_the_dashboard_counts_exactly_the_window_its_first_hour_in_part(
    hub: HubUnderTest,
) -> None:
    store = hub.hub.store
    ids = [await _finished(hub, f"EDGE-{n}") for n in range(4)]
    # Received at 10:20, 10:40, 11:10 and 12:05 of a day long past.
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=30)
    received = [
        day + timedelta(hours=10, minutes=20),
        day + timedelta(hours=10, minutes=40),
        day + timedelta(hours=11, minutes=10),
        day + timedelta(hours=12, minutes=5),
    ]
    async with store.writing() as connection:
        for instance_id, at in zip(ids, received, strict=True):
            await connection.execute(
                update(InstanceRow).where(InstanceRow.id == instance_id).values(received_at=at)
            )

    since_half_past_ten = await counts_by_hour(store, day + timedelta(hours=10, minutes=30))
    since_eleven = await counts_by_hour(store, day + timedelta(hours=11))

    assert [(each.hour, each.count) for each in since_half_past_ten] == [
        (day + timedelta(hours=10), 1),
        (day + timedelta(hours=11), 1),
        (day + timedelta(hours=12), 1),
    ]
    assert [(each.hour, each.count) for each in since_eleven] == [
        (day + timedelta(hours=11), 1),
        (day + timedelta(hours=12), 1),
    ]


@pytest.fixture
def postgres_only(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes write at once on PostgreSQL only")
    return database_url


async def test_writers_and_folds_at_once_lose_no_count_and_never_deadlock(
    hub: HubUnderTest, postgres_only: str
) -> None:
    # Two engines, as two hub processes have, each committing its writes in groups.
    stores = [InstanceStore(open_engine(postgres_only)) for _ in range(2)]

    async def flows(store: InstanceStore, n: int) -> None:
        async def one(m: int) -> None:
            instance_id = str(uuid.uuid4())
            await store.create(
                instance_id=instance_id,
                flow=f"flow_{m % 3}",
                caller="cpmcs",
                payload={"n": m},
                keys=[("messageId", f"BURST-{n}-{m}")],
            )
            await store.finish(
                instance_id,
                status="succeeded" if m % 4 else "failed",
                reply=None,
                error=None,
                activities=[],
                keys=[],
            )

        await asyncio.gather(*(one(m) for m in range(300)))

    async def folds(store: InstanceStore) -> int:
        done = 0
        for _ in range(40):
            done += await fold_changes(store)
            await asyncio.sleep(0.005)
        return done

    try:
        *_, first_folds, second_folds = await asyncio.gather(
            flows(stores[0], 0), flows(stores[1], 1), folds(stores[0]), folds(stores[1])
        )
        assert first_folds + second_folds > 0
        expected = await grouped(hub.hub.store)
        assert sum(expected.values()) == 600
        assert await kept(hub.hub.store) == expected
        assert await folded(hub.hub.store) == ended(expected)
    finally:
        for store in stores:
            await store.aclose()
