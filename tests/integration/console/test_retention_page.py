"""The retention in force on the schedules page, and an instance whose payload was purged."""

from __future__ import annotations

from derms_bridge.settings.retention import KeepOverride, OverrideByOutcome, Retention
from tests.conftest import CPMCS_AUTH
from tests.integration.console.conftest import (
    ConsoleUnderTest,
    console_for,
    page_text,
    table_rows,
)
from tests.integration.engine.test_retention import age
from tests.payloads import customer_unavailability_message


async def test_the_schedules_page_shows_the_purge_and_the_retention_in_force(
    console: ConsoleUnderTest,
) -> None:
    retention = Retention(
        flows={
            "event_device_reservation": OverrideByOutcome(succeeded=KeepOverride(payload_days=2))
        }
    )
    settings = console.settings.model_copy(update={"retention": retention})
    async for kept in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await kept.log_in()
        page = await kept.client.get("/console/schedules")

    rows = {row[0]: row for row in table_rows(page.text)}
    assert rows["0"][1] == "Purge (retention) DERMS-BRIDGE-PURGE"
    assert rows["0"][2] == "17 * * * * UTC"
    assert rows["every other flow"][1:] == [
        "7 days",
        "90 days",
        "180 days",
        "180 days",
        "180 days",
        "180 days",
    ]
    assert rows["7 Event Device Reservation (event_device_reservation)"][1:3] == [
        "2 days",
        "90 days",
    ]


async def test_an_instance_whose_payload_was_purged_says_when_and_stays_findable(
    console: ConsoleUnderTest,
) -> None:
    reply = await console.client.post(
        "/cpmcs/outbound/X1-CUSTUNAVL",
        json=customer_unavailability_message("PURGED-1"),
        auth=CPMCS_AUTH,
    )
    instance_id = reply.headers["X-Instance-Id"]
    await age(console.hub, 8)
    await console.hub.purge.run()
    await console.log_in()

    page = page_text((await console.client.get(f"/console/instances/{instance_id}")).text)
    found = await console.client.get("/console/instances", params={"key": "PURGED-1"})

    assert "Payload purged on " in page
    assert "(retention): the payload, the reply and the file's rows are gone" in page
    assert "Payload in" not in page
    assert instance_id in found.text
