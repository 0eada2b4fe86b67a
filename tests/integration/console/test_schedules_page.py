"""The console's schedules page and the file stores on its connections and dashboard pages."""

from __future__ import annotations

import asyncio
import html
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from derms_bridge.engine.schedules import Scheduler
from derms_bridge.settings import Schedule
from derms_bridge.settings.file_storage import FtpSettings
from derms_bridge.store.schedules import ScheduleStore
from tests.conftest import derms_received
from tests.integration.console.conftest import (
    ConsoleUnderTest,
    console_for,
    device_score_folder,
    page_text,
    table_rows,
)

RUN_LINK = re.compile(r'id="run-link" href="/console/instances/([0-9a-f-]+)"')
SCORES = "deviceId,score\nD-1001,0.93\nD-1002,0.41\n"


def htmx(console: ConsoleUnderTest) -> dict[str, str]:
    """The headers htmx sends from a console page: its own, and the session's CSRF token."""
    return {"HX-Request": "true", "X-CSRF-Token": console.csrf_token}


async def run_now(console: ConsoleUnderTest, flow: str = "device_score_ftp") -> httpx.Response:
    return await console.client.post(f"/console/schedules/{flow}/run", headers=htmx(console))


async def row_once_ended(console: ConsoleUnderTest, flow: str = "device_score_ftp") -> list[str]:
    """The flow's row as the page's polling gets it, once it no longer polls: its run ended."""
    for _ in range(600):
        row = await console.client.get(f"/console/schedules/{flow}", headers=htmx(console))
        if "hx-trigger" not in row.text:
            [cells] = table_rows(row.text)
            return cells
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run of {flow} never ended")


def table_of(page: str, css_class: str) -> list[list[str]]:
    """The rows of the page's table of that class."""
    return table_rows(page.split(f'<table class="{css_class}">', 1)[1].split("</table>", 1)[0])


def started_instance(reply: httpx.Response) -> str:
    found = RUN_LINK.search(reply.text)
    assert found, reply.text
    return found.group(1)


async def test_the_schedules_page_shows_each_scheduled_flow_with_or_without_a_schedule(
    console: ConsoleUnderTest,
) -> None:
    nightly = Schedule(cron="0 2 * * *", timezone="Europe/Paris")
    settings = console.settings.model_copy(update={"schedules": {"device_score_ftp": nightly}})
    async for scheduled in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await scheduled.log_in()
        page = await scheduled.client.get("/console/schedules")

    assert page.status_code == 200
    assert 'href="/console/schedules" aria-current="page"' in page.text
    rows = {row[0]: row for row in table_rows(page.text)}
    assert rows["#"] == ["#", "flow", "schedule", "next run", "last run", ""]
    assert rows["16"][1] == "Device Score FTP Transfer OUTL-BA-DRMS_DACS_SEND_DVCSCORE"
    assert rows["16"][2] == "0 2 * * * Europe/Paris"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 02:00 CES?T", rows["16"][3])
    assert rows["16"][4] == "never run"
    assert rows["16"][5] == "Run now"
    assert rows["17"][1] == "Device Score OS Transfer OUTL-BA-DRMS_DACS_SEND_DVCSCOREC"
    assert rows["17"][2:5] == ["no schedule: runs when started", "—", "never run"]


async def test_run_now_starts_a_run_and_its_row_follows_it_until_it_succeeds(
    console: ConsoleUnderTest, derms_sim: httpx.Client
) -> None:
    folder = device_score_folder(console.settings)
    (folder / "SDCSE_20260310.csv").write_text(SCORES)
    await console.log_in()

    started = await run_now(console)

    assert started.status_code == 200
    instance_id = started_instance(started)
    assert "Device Score FTP Transfer started now as instance" in page_text(started.text)
    # The flow's row comes along, running, to replace the one on the page.
    assert 'id="schedule-device_score_ftp" class="running"' in started.text
    assert 'hx-swap-oob="true"' in started.text
    last_run = (await row_once_ended(console))[4]
    assert last_run.endswith("succeeded")
    assert len(derms_received(derms_sim, "/device-score")) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["Sent-SDCSE_20260310.csv"]
    page = (await console.client.get("/console/schedules")).text
    assert f'href="/console/instances/{instance_id}"' in page
    instance = html.unescape(
        page_text((await console.client.get(f"/console/instances/{instance_id}")).text)
    )
    assert "fileName SDCSE_20260310.csv" in instance
    assert '"trigger": "run-now", "startedBy": "operator"' in instance


async def test_a_run_derms_fails_shows_failed_with_its_error(
    console: ConsoleUnderTest, derms_sim: httpx.Client
) -> None:
    folder = device_score_folder(console.settings)
    (folder / "SDCSE_20260311.csv").write_text(SCORES)
    derms_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await console.log_in()

    started = await run_now(console)

    assert started.status_code == 200
    last_run = (await row_once_ended(console))[4]
    assert "failed 0 sent, 1 not sent from /outbound/device-score on local folder" in last_run
    assert sorted(path.name for path in folder.iterdir()) == ["Error-SDCSE_20260311.csv"]


async def test_run_now_while_the_flow_runs_is_refused_naming_the_run(
    console: ConsoleUnderTest, derms_sim: httpx.Client
) -> None:
    (device_score_folder(console.settings) / "SDCSE_slow.csv").write_text(SCORES)
    derms_sim.put("/_sim/faults", json={"latency_ms": 1500}).raise_for_status()
    await console.log_in()

    first = await run_now(console)
    again = await run_now(console)

    running_id = started_instance(first)
    assert again.status_code == 409
    refusal = page_text(again.text)
    assert (
        f"Not started: Device Score FTP Transfer is already running as instance {running_id}"
    ) in refusal
    assert "Wait for it to end, then run it again." in refusal
    assert f'id="running-link" href="/console/instances/{running_id}"' in again.text
    assert (await row_once_ended(console))[4].endswith("succeeded")
    assert len(derms_received(derms_sim, "/device-score")) == 1


async def test_run_now_without_the_csrf_token_is_refused_and_starts_nothing(
    console: ConsoleUnderTest, derms_sim: httpx.Client
) -> None:
    (device_score_folder(console.settings) / "SDCSE_csrf.csv").write_text(SCORES)
    await console.log_in()

    without = await console.client.post(
        "/console/schedules/device_score_ftp/run", headers={"HX-Request": "true"}
    )
    wrong = await console.client.post(
        "/console/schedules/device_score_ftp/run",
        headers={"HX-Request": "true", "X-CSRF-Token": "not-the-token"},
    )

    assert (without.status_code, wrong.status_code) == (403, 403)
    assert "Nothing was done" in without.text
    [ftp, _os, _purge] = await console.hub.scheduler.overview()
    assert (ftp.last_run, ftp.running) == (None, False)
    assert derms_received(derms_sim, "/device-score") == []


async def test_run_now_of_a_flow_that_is_not_scheduled_is_refused(
    console: ConsoleUnderTest,
) -> None:
    await console.log_in()

    reply = await run_now(console, "enrollment_sync")
    row = await console.client.get("/console/schedules/nosuch", headers=htmx(console))

    assert reply.status_code == 404
    assert "Not started: no scheduled flow is called &#39;enrollment_sync&#39;" in reply.text
    assert row.status_code == 404


async def test_a_stranger_is_sent_to_the_login_from_the_schedules(
    console: ConsoleUnderTest,
) -> None:
    page = await console.client.get("/console/schedules")
    run = await console.client.post(
        "/console/schedules/device_score_ftp/run", headers={"HX-Request": "true"}
    )

    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=/console/schedules"
    assert run.status_code == 403
    [ftp, _os, _purge] = await console.hub.scheduler.overview()
    assert ftp.last_run is None


async def test_the_dashboard_counts_scheduled_runs_by_what_started_them(
    console: ConsoleUnderTest,
) -> None:
    (device_score_folder(console.settings) / "SDCSE_dash.csv").write_text(SCORES)
    await console.log_in()
    await run_now(console)
    await row_once_ended(console)
    nightly = Scheduler(
        engine=console.hub.engine,
        store=ScheduleStore(console.hub.store),
        schedules={"device_score_ftp": Schedule(cron="0 2 * * *")},
        shutdown=console.hub.shutdown,
    )
    now = datetime.now(UTC)
    await nightly.claim_due(now)
    [tick] = await nightly.claim_due(now + timedelta(days=1))
    await tick.done

    page = (await console.client.get("/console/", params={"window": "1h"})).text

    flows = {row[0]: row[2:] for row in table_of(page, "counts")}
    # The tick found no file left: skipped.
    assert flows["#"] == [
        "received",
        "succeeded",
        "failed",
        "resolved",
        "rejected",
        "in progress",
        "skipped",
    ]
    assert flows["16"] == ["2", "1", "0", "0", "0", "0", "1"]
    assert flows["15"] == flows["17"] == flows["18"] == flows["19"] == ["0"] * 7
    scheduled = {row[0]: row[2:] for row in table_of(page, "scheduled")}
    assert scheduled["#"][1:3] == ["runs by schedule", "runs started by hand"]
    assert scheduled["16"][:4] == ["no schedule", "1", "1", "—"]
    assert "skipped no file beginning with 'SDCSE' in /outbound/device-score" in scheduled["16"][4]
    assert scheduled["17"][:4] == ["no schedule", "0", "0", "—"]
    assert scheduled["17"][4] == "never run"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that takes connections and never says a word, as a hung server does."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening.getsockname()[1]


async def test_the_connections_page_logs_in_to_both_file_stores(
    console: ConsoleUnderTest,
) -> None:
    await console.log_in()

    page = (await console.client.get("/console/connections")).text

    rows = {row[0]: row for row in table_rows(page)}
    stores = console.settings.file_stores
    assert rows["CPMCS FTP server"][1:4] == [
        "file store",
        f"local folder {stores.ftp.root}",  # type: ignore[union-attr]
        "yes",
    ]
    assert rows["CPMCS object storage"][1:4] == [
        "file store",
        f"local folder {stores.object_storage.root}",  # type: ignore[union-attr]
        "yes",
    ]


async def test_a_hung_file_store_is_cut_short_and_the_page_still_answers(
    console: ConsoleUnderTest, silent_server: int
) -> None:
    hung = FtpSettings(
        host="127.0.0.1", port=silent_server, username="cpmcs", password="ftp-pw", timeout=600
    )
    settings = console.settings.model_copy(
        update={"file_stores": console.settings.file_stores.model_copy(update={"ftp": hung})}
    )
    async for hanging in console_for(settings, console.hub.lookups.current, "http://hub.test"):
        await hanging.log_in()
        page = (await hanging.client.get("/console/connections")).text

    rows = {row[0]: row for row in table_rows(page)}
    assert rows["CPMCS FTP server"][2:4] == [
        f"FTP 127.0.0.1:{silent_server}",
        "no no answer within 3 s",
    ]
    assert rows["CPMCS object storage"][3] == "yes"
    assert rows["CPMCS"][3] == "yes"
