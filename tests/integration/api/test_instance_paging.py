"""Paging through many instances on both databases: a page's `next_cursor` gives the next
page, newest first, every instance once (instances received in the same instant too),
whatever arrives meanwhile; the total counts up to a limit and says when there are more."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.tables import InstanceRow
from tests.conftest import HubUnderTest
from tests.integration.api.test_ops import listing, refused_listing

FLOW = "customer_unavailability"
#: When the instances of these tests were received: one a minute back from here, two of
#: them in each of a few minutes, so that pages end between two instances of one instant.
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def received(hub: HubUnderTest, count: int, *, flow: str = FLOW) -> list[str]:
    return await stored(hub.hub.store, count, flow=flow)


async def stored(store: InstanceStore, count: int, *, flow: str = FLOW) -> list[str]:
    """`count` instances of `flow` as a flow writes them, received a minute apart, every
    third in the same minute as the one before it; their ids."""
    made = []
    for n in range(count):
        instance_id = str(uuid.uuid4())
        await store.create(
            instance_id=instance_id,
            flow=flow,
            caller="cpmcs",
            payload={"n": n},
            keys=[("messageId", f"PAGE-{n}")],
        )
        await store.finish(
            instance_id, status="succeeded", reply={}, error=None, activities=[], keys=[]
        )
        minute = n - n // 3
        async with store.writing() as connection:
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(received_at=START - timedelta(minutes=minute))
            )
        made.append(instance_id)
    return made


def newest_first(ids: list[str]) -> list[str]:
    """As `received` made them: newest first, those of one minute by id."""
    minutes = {instance_id: n - n // 3 for n, instance_id in enumerate(ids)}
    return sorted(ids, key=lambda instance_id: (minutes[instance_id], instance_id))


async def pages(hub: HubUnderTest, **params: str | int) -> list[dict[str, Any]]:
    """Every page of a listing, each asked for with the cursor the page before gave."""
    found = [await listing(hub, **params)]
    while found[-1]["next_cursor"] is not None:
        found.append(await listing(hub, **params, cursor=found[-1]["next_cursor"]))
    return found


async def test_cursor_pages_give_every_instance_once_newest_first(hub: HubUnderTest) -> None:
    made = await received(hub, 23)

    found = await pages(hub, flow=FLOW, limit=5)

    assert [len(page["items"]) for page in found] == [5, 5, 5, 5, 3]
    listed = [item["id"] for page in found for item in page["items"]]
    assert listed == newest_first(made)
    assert {(page["total"], page["total_exact"]) for page in found} == {(23, True)}


async def test_a_cursor_page_is_the_same_when_instances_arrive_meanwhile(
    hub: HubUnderTest,
) -> None:
    made = newest_first(await received(hub, 12))
    first = await listing(hub, flow=FLOW, limit=4)

    newer = await received(hub, 3)
    async with hub.hub.store.writing() as connection:
        await connection.execute(
            update(InstanceRow)
            .where(InstanceRow.id.in_(newer))
            .values(received_at=START + timedelta(hours=1))
        )
    second = await listing(hub, flow=FLOW, limit=4, cursor=first["next_cursor"])

    assert [item["id"] for item in second["items"]] == made[4:8]
    assert second["total"] == 15


async def test_an_offset_counts_from_the_cursor(hub: HubUnderTest) -> None:
    made = newest_first(await received(hub, 10))
    first = await listing(hub, flow=FLOW, limit=3)

    skipped = await listing(hub, flow=FLOW, limit=3, offset=3, cursor=first["next_cursor"])

    assert [item["id"] for item in skipped["items"]] == made[6:9]


async def test_the_total_counts_up_to_the_limit_and_says_when_there_are_more(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("derms_bridge.store.instances.COUNT_LIMIT", 10)
    await received(hub, 14)
    await received(hub, 2, flow="customer_event_opt_out")

    wide = await listing(hub, limit=5)
    narrow = await listing(hub, flow="customer_event_opt_out")

    assert (wide["total"], wide["total_exact"], len(wide["items"])) == (10, False, 5)
    assert (narrow["total"], narrow["total_exact"]) == (2, True)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "MjAyNi0xMS0zMFQxMjowMDowMA", "fA"])
async def test_a_cursor_no_page_gave_is_refused_naming_it(hub: HubUnderTest, cursor: str) -> None:
    problem = await refused_listing(hub, cursor=cursor)

    assert [error["field"] for error in problem["errors"]] == ["cursor"]
    assert "next_cursor" in problem["errors"][0]["message"]
