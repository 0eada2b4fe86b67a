"""Instances written by many flows at once share commits: each is kept whole, and a write
that cannot be made fails only its own flow (both databases)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError

from derms_bridge.schemas.ops import InstanceFilter
from derms_bridge.store.instances import InstanceStore
from tests.conftest import POSTGRES_ADMIN_URL
from tests.integration.engine.conftest import answered_call, unanswered_opt_out

BURST = 120


async def one_flow(store: InstanceStore, instance_id: str, n: int) -> None:
    await store.create(
        instance_id=instance_id,
        flow="program_event_status_update",
        caller="derms",
        payload={"eventId": f"EV-{n}"},
        keys=[("event", f"EV-{n}")],
    )
    await store.finish(
        instance_id,
        status="succeeded",
        reply={"n": n},
        error=None,
        activities=[answered_call("cpmcs"), answered_call("derms")],
        keys=[("program_event", f"PE-{n}")],
    )


async def test_a_burst_of_flows_keeps_every_instance_whole(store: InstanceStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(BURST)]

    await asyncio.gather(*(one_flow(store, instance_id, n) for n, instance_id in enumerate(ids)))

    found = await store.search(InstanceFilter(status="succeeded", limit=BURST + 1))
    assert found.total == BURST
    for n in (0, BURST // 2, BURST - 1):
        history = await store.get(ids[n])
        assert history is not None
        assert (history.status, history.payload, history.reply) == (
            "succeeded",
            {"eventId": f"EV-{n}"},
            {"n": n},
        )
        assert [a.target for a in history.activities] == ["cpmcs", "derms"]
        assert {(k.kind, k.value) for k in history.business_keys} == {
            ("event", f"EV-{n}"),
            ("program_event", f"PE-{n}"),
        }


async def test_a_write_that_cannot_be_made_fails_only_its_own_flow(store: InstanceStore) -> None:
    taken = str(uuid.uuid4())
    await one_flow(store, taken, -1)
    others = [str(uuid.uuid4()) for _ in range(30)]

    outcomes = await asyncio.gather(
        *(one_flow(store, instance_id, n) for n, instance_id in enumerate(others)),
        one_flow(store, taken, -2),
        return_exceptions=True,
    )

    assert outcomes[:-1] == [None] * len(others)
    assert isinstance(outcomes[-1], IntegrityError)
    found = await store.search(InstanceFilter(status="succeeded", limit=100))
    assert found.total == len(others) + 1
    kept = await store.get(taken)
    assert kept is not None and kept.payload == {"eventId": "EV--1"}


async def test_what_flows_written_together_kept_reads_back_as_they_wrote_it(
    store: InstanceStore,
) -> None:
    at = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)
    unanswered = unanswered_opt_out(at)
    ids = [str(uuid.uuid4()) for _ in range(3)]

    async def flow(instance_id: str, n: int) -> None:
        await store.create(
            instance_id=instance_id,
            flow="customer_event_opt_out",
            caller=None if n else "derms",
            payload={"note": 'l\'été "chaud" ✓', "n": n, "absent": None},
            keys=[("message", f"M-{n}"), ("message", f"M-{n}")],
        )
        await store.finish(
            instance_id,
            status="failed",
            reply=None,
            error=f"failed {n}",
            activities=[unanswered, unanswered],
            keys=[],
        )

    await asyncio.gather(*(flow(instance_id, n) for n, instance_id in enumerate(ids)))

    for n, instance_id in enumerate(ids):
        history = await store.get(instance_id)
        assert history is not None
        assert (history.caller, history.payload, history.reply, history.error) == (
            None if n else "derms",
            {"note": 'l\'été "chaud" ✓', "n": n, "absent": None},
            None,
            f"failed {n}",
        )
        assert [(k.kind, k.value) for k in history.business_keys] == [("message", f"M-{n}")]
        assert [
            (a.seq, a.method, a.path, a.http_status, a.duration_ms, a.error, a.at)
            for a in history.activities
        ] == [(seq, None, None, None, 30000.25, unanswered.error, at) for seq in (1, 2)]


async def test_flows_after_the_database_ended_the_hubs_connections_are_kept(
    store: InstanceStore, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL server ends its sessions (a restart, a failover); SQLite none")
    await one_flow(store, str(uuid.uuid4()), 1)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database_url.rsplit("/", 1)[1],),
        )
    after = [str(uuid.uuid4()) for _ in range(8)]

    await asyncio.gather(*(one_flow(store, instance_id, n) for n, instance_id in enumerate(after)))

    for instance_id in after:
        history = await store.get(instance_id)
        assert history is not None and history.status == "succeeded"
