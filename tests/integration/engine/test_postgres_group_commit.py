"""On PostgreSQL the group commit's transactions go by psycopg itself, in one round trip:
each is still all or nothing, an insert's rows read back the same whether they went listed
or as arrays, and the database refusing writes is still an outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import DataError

from derms_bridge.errors import DatabaseUnavailable
from derms_bridge.store.database import open_engine
from derms_bridge.store.instances import InstanceStore
from tests.conftest import postgres_database, postgres_read_only
from tests.integration.engine.conftest import answered_call, unanswered_opt_out


async def created(store: InstanceStore, instance_id: str) -> None:
    await store.create(
        instance_id=instance_id,
        flow="program_event_status_update",
        caller="derms",
        payload={"stageId": instance_id},
        keys=[("stage", instance_id)],
    )


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("psycopg's pipeline is PostgreSQL's; SQLite's writes go by its own thread")


async def test_a_statement_that_fails_undoes_the_others_of_its_transaction(
    store: InstanceStore, database_url: str
) -> None:
    postgres_only(database_url)
    running = str(uuid.uuid4())
    await created(store, running)
    beside = str(uuid.uuid4())

    # One transaction: the new instance's insert, then the outcome's update, then its
    # activities, whose target is longer than the column takes.
    outcomes = await asyncio.gather(
        created(store, beside),
        store.finish(
            running,
            status="succeeded",
            reply={"ok": True},
            error=None,
            activities=[answered_call("t" * 40)],
            keys=[],
        ),
        return_exceptions=True,
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], DataError)
    assert "value too long" in str(outcomes[1])
    unfinished = await store.get(running)
    assert unfinished is not None
    assert (unfinished.status, unfinished.reply, unfinished.activities) == ("in_progress", None, [])
    kept = await store.get(beside)
    assert kept is not None
    assert [(k.kind, k.value) for k in kept.business_keys] == [("stage", beside)]


# One flow's rows go listed; nine flows' rows, over 50 values a statement, as arrays.
@pytest.mark.parametrize("flows", [1, 9], ids=["listed", "arrays"])
async def test_rows_written_together_read_back_as_written_however_they_went(
    store: InstanceStore, flows: int
) -> None:
    at = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)
    unanswered = unanswered_opt_out(at)
    ids = [str(uuid.uuid4()) for _ in range(flows)]
    payload = {"note": 'l\'été "chaud" \\ {a,b} ✓', "absent": None, "list": [1, 2.5]}

    await asyncio.gather(
        *(
            store.create(
                instance_id=instance_id,
                flow="customer_event_opt_out",
                caller=None,
                payload=payload,
                keys=[("message", f"M-{n}"), ("event", "{EV,1}")],
            )
            for n, instance_id in enumerate(ids)
        )
    )
    await asyncio.gather(
        *(
            store.finish(
                instance_id,
                status="failed",
                reply=None,
                error='"quoted"\nand NULL',
                activities=[unanswered, answered_call("cpmcs")],
                keys=[],
            )
            for instance_id in ids
        )
    )

    for n, instance_id in enumerate(ids):
        history = await store.get(instance_id)
        assert history is not None
        assert (history.caller, history.payload, history.reply, history.error) == (
            None,
            payload,
            None,
            '"quoted"\nand NULL',
        )
        assert sorted((k.kind, k.value) for k in history.business_keys) == [
            ("event", "{EV,1}"),
            ("message", f"M-{n}"),
        ]
        assert [
            (a.seq, a.target, a.method, a.http_status, a.duration_ms, a.error)
            for a in history.activities
        ] == [
            (1, "derms", None, None, 30000.25, unanswered.error),
            (2, "cpmcs", "POST", 200, 2.5, None),
        ]
        assert history.activities[0].at == at


@pytest.fixture
def database_of_its_own(database_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database for one test, which it may make refuse writes."""
    postgres_only(database_url)
    with postgres_database("derms_bridge_refusing") as url:
        yield url


@pytest.fixture
async def refusing_store(database_of_its_own: str) -> AsyncIterator[InstanceStore]:
    instances = InstanceStore(open_engine(database_of_its_own))
    yield instances
    await instances.aclose()


async def test_writes_the_database_refuses_are_an_outage_and_go_once_it_takes_them(
    refusing_store: InstanceStore, database_of_its_own: str
) -> None:
    await created(refusing_store, str(uuid.uuid4()))

    postgres_read_only(database_of_its_own, True)
    during = [str(uuid.uuid4()) for _ in range(6)]
    refused = await asyncio.gather(
        *(created(refusing_store, instance_id) for instance_id in during),
        return_exceptions=True,
    )
    postgres_read_only(database_of_its_own, False)
    after = [str(uuid.uuid4()) for _ in range(6)]
    await asyncio.gather(*(created(refusing_store, instance_id) for instance_id in after))

    assert all(isinstance(outcome, DatabaseUnavailable) for outcome in refused), refused
    assert all("refuses writes" in str(outcome) for outcome in refused), refused
    assert [await refusing_store.get(instance_id) for instance_id in during] == [None] * 6
    assert None not in [await refusing_store.get(instance_id) for instance_id in after]
