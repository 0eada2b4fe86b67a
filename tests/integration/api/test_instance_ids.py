"""The hub names the instances it makes with UUIDv7 ids (ids.py), and instances named by the
random ids made before (UUIDv4) page together with them: every instance once, newest
first, whichever kind of id breaks a tie in time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import update

from derms_bridge.ids import new_instance_id
from derms_bridge.store.tables import InstanceRow
from tests.conftest import HubUnderTest
from tests.integration.api.test_instance_paging import pages
from tests.integration.api.test_ops import FLOW_KEY, enroll, listing

FLOW = "customer_unavailability"


async def test_an_instance_the_hub_makes_has_a_v7_id_of_when_it_was_made(
    hub: HubUnderTest,
) -> None:
    before = datetime.now(UTC)
    instance_id = await enroll(hub, "IDS-1")
    after = datetime.now(UTC)

    made = uuid.UUID(instance_id)
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    at = datetime.fromtimestamp((made.int >> 80) / 1000, UTC)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= at <= after
    assert [item["id"] for item in (await listing(hub, flow=FLOW_KEY))["items"]] == [instance_id]


async def test_old_random_ids_and_new_ones_page_together_every_instance_once(
    hub: HubUnderTest,
) -> None:
    store = hub.hub.store
    made = []
    for n in range(12):
        instance_id = str(uuid.uuid4()) if n % 2 else new_instance_id()
        await store.create(
            instance_id=instance_id, flow=FLOW, caller="cpmcs", payload={"n": n}, keys=[]
        )
        made.append(instance_id)
    # Four instants, three instances each: every page but the first begins or ends in a tie.
    for n, instance_id in enumerate(made):
        async with store.writing() as connection:
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(received_at=datetime(2026, 11, 30, 12, n // 3, tzinfo=UTC))
            )

    found = await pages(hub, flow=FLOW, limit=5)

    listed = [item["id"] for page in found for item in page["items"]]
    by_minute = sorted(made, key=lambda instance_id: (-(made.index(instance_id) // 3), instance_id))
    assert listed == by_minute
