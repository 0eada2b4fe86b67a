"""The storage page (the database's size, the retention in force), the purge among the
schedules, and an instance whose payload was purged."""

from __future__ import annotations

from derms_bridge.settings.retention import KeepOverride, OverrideByOutcome, Retention
from tests.conftest import CPMCS_AUTH
from tests.integration.console.conftest import (
    ConsoleUnderTest,
    console_for,
    page_text,
    table_rows,
)
from tests.integration.engine.test_retention import age, server_autovacuum
from tests.payloads import customer_unavailability_message


async def test_the_storage_page_shows_the_database_and_the_retention_in_force(
    console: ConsoleUnderTest,
) -> None:
    retention = Retention(
        flows={
            "event_device_reservation": OverrideByOutcome(succeeded=KeepOverride(payload_days=2))
        }
    )
    settings = console.settings.model_copy(update={"retention": retention})
    async for kept in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await console.client.post(
            "/cpmcs/outbound/X1-CUSTUNAVL",
            json=customer_unavailability_message("STORED-1"),
            auth=CPMCS_AUTH,
        )
        await age(kept.hub, 100)
        await kept.log_in()
        page = await kept.client.get("/console/storage")
        schedules = await kept.client.get("/console/schedules")
        autovacuum = await server_autovacuum(kept.hub.store.engine)

    assert page.status_code == 200
    assert 'href="/console/storage" aria-current="page"' in page.text
    text = page_text(page.text)
    # The instance goes whole, its payload with it: no payload waits apart.
    assert "waiting for the purge 0 payloads, 1 instances, 0 file rows" in text
    if autovacuum is None:
        assert "autovacuum" not in text
    elif autovacuum == "on":
        assert "autovacuum on" in text
    else:
        assert "autovacuum off: nothing reclaims what the purge deletes" in text
    rows = {row[0]: row for row in table_rows(page.text)}
    assert rows["instances"][1].endswith(("KB", "MB", "kB"))
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
    scheduled = {row[0]: row for row in table_rows(schedules.text)}
    assert scheduled["0"][1] == "Purge (retention) DERMS-BRIDGE-PURGE"
    assert scheduled["0"][2] == "17 * * * * UTC"


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
