"""An operator in a real Chromium: log in, find a failed enrollment, resubmit it, run a
schedule now and watch its outcome, read the dashboard's charts and a file's progress as the
ops API gives them, be refused."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect
from sqlalchemy import delete, func, select, update

from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.store.instances import as_utc
from derms_bridge.store.tables import ActivityRow, FileJobRow, InstanceRow, SegmentRow
from tests.browser.conftest import ServedHub, follow, screenshot
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, PASSWORDS
from tests.csv_files import write_reservation_csv
from tests.integration.console.conftest import chart_bars
from tests.payloads import enrollment_message, enrollment_request

DEVICE_SCORES = "deviceId,score\nD-1001,0.93\nD-1002,0.41\nD-1003,0.77\n"
LATENCY_TITLE = re.compile(r"(.+): (p50|p95) ([\d,]+\.\d ms), (\d+) calls?")
SEGMENT_TITLE = re.compile(r"([a-z]+): (\d+) segments?")


async def log_in(page: Page, password: str = PASSWORDS["operator"]) -> None:
    await page.goto("/console/")
    await page.get_by_label("Username").fill("operator")
    await page.get_by_label("Password").fill(password)
    await follow(page.get_by_role("button", name="Log in"))


async def send_enrollment(hub_url: str, message_id: str) -> None:
    async with httpx.AsyncClient(base_url=hub_url, timeout=30) as derms:
        await derms.post(
            "/enroll-to-dacs",
            json=enrollment_message(enrollment_request(message_id)),
            auth=DERMS_AUTH,
        )


async def test_an_operator_finds_a_failed_enrollment_and_resubmits_it_once_cpmcs_recovers(
    page: Page, served_hub: str, cpmcs_sim: httpx.Client
) -> None:
    await send_enrollment(served_hub, "BROWSER-OK-1")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await send_enrollment(served_hub, "BROWSER-FAIL-1")
    await page.goto("/console/login")
    await screenshot(page, "login")

    await log_in(page)
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.locator("table.failing")).to_contain_text("CPMCS answered HTTP 503")
    await screenshot(page, "dashboard")

    await follow(page.get_by_role("link", name="Instances"))
    await page.get_by_label("Business identifier").fill("BROWSER-FAIL-1")
    await expect(page.locator("#total")).to_have_text("1")
    await expect(page).to_have_url(re.compile(r"key=BROWSER-FAIL-1"))
    await screenshot(page, "instances")

    await follow(page.locator("table.instances a").first)
    await expect(page.locator("#error")).to_contain_text("CPMCS answered HTTP 503")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    await page.get_by_role("button", name="Resubmit").click()
    await expect(page.locator("#resubmitted")).to_contain_text("succeeded")
    await screenshot(page, "instance")

    await follow(page.locator("#resubmitted-link"))
    await expect(page.locator("h1 .status")).to_have_text("succeeded")
    await expect(page.get_by_text("resubmission of")).to_be_visible()


async def test_the_instance_filters_search_as_they_change_and_opening_a_result_searches_no_more(
    page: Page, served_hub: str, cpmcs_sim: httpx.Client
) -> None:
    await send_enrollment(served_hub, "FILTER-OK-1")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await send_enrollment(served_hub, "FILTER-FAIL-1")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    await log_in(page)
    await follow(page.get_by_role("link", name="Instances"))
    await expect(page.locator("#total")).to_have_text("2")

    await page.locator("select[name=status]").select_option("failed")
    await expect(page.locator("#total")).to_have_text("1")
    await expect(page).to_have_url(re.compile(r"status=failed"))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    await page.get_by_label("from (UTC)").fill(tomorrow)
    await expect(page.locator("#total")).to_have_text("0")
    await page.get_by_label("from (UTC)").fill("")
    await expect(page.locator("#total")).to_have_text("1")

    # Opening a result leaves the search field, whose change the form once took for a new
    # search: that search raced the page being opened, and could leave its buttons dead.
    await page.get_by_label("Business identifier").fill("FILTER-FAIL-1")
    await expect(page).to_have_url(re.compile(r"key=FILTER-FAIL-1"))
    searches: list[str] = []
    page.on(
        "request",
        lambda sent: searches.append(sent.url) if "/console/instances?" in sent.url else None,
    )
    await follow(page.locator("table.instances a").first)
    await expect(page.locator("#error")).to_contain_text("CPMCS answered HTTP 503")
    assert searches == []


async def test_the_dashboard_charts_the_hours_messages_the_api_counts(
    page: Page, served_hub: str, cpmcs_sim: httpx.Client
) -> None:
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    await send_enrollment(served_hub, "CHART-OK-1")
    await send_enrollment(served_hub, "CHART-OK-2")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await send_enrollment(served_hub, "CHART-FAIL-1")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    await log_in(page)
    chart = page.get_by_role("img", name="Enrollment Request: messages per hour by status")
    await expect(chart).to_be_visible()
    bars = chart_bars(await page.content())
    by_status = Counter[str]()
    for _, status, _, count in bars:
        by_status[status] += count
    assert by_status == {"succeeded": 2, "failed": 1}
    async with httpx.AsyncClient(base_url=served_hub, timeout=30) as operator:
        for _, status, hour, count in bars:
            listed = await operator.get(
                "/ops/instances",
                params={
                    "flow": "enrollment_request",
                    "status": status,
                    "received_from": hour.isoformat(),
                    "received_to": (hour + timedelta(hours=1)).isoformat(),
                    "limit": 1,
                },
                auth=OPERATOR_AUTH,
            )
            assert listed.json()["total"] == count
    for bar in await chart.locator("rect.bar").all():
        box = await bar.bounding_box()
        assert box is not None and box["height"] > 0
    assert not [text for text in refusals if "Content Security Policy" in text]


def ms(milliseconds: float) -> str:
    return f"{milliseconds:,.1f} ms"


async def operator_reads(hub_url: str, path: str, **params: str) -> Any:
    async with httpx.AsyncClient(base_url=hub_url, timeout=30) as operator:
        answer = await operator.get(path, params=params, auth=OPERATOR_AUTH)
    answer.raise_for_status()
    return answer.json()


async def titles(svg: Locator, selector: str) -> list[str]:
    return [text.strip() for text in await svg.locator(selector).all_text_contents()]


async def test_the_dashboard_charts_each_targets_latency_as_the_api_gives(
    page: Page, served_hub: str, hub_file_stores: Path, cpmcs_sim: httpx.Client
) -> None:
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    for n in range(3):
        await send_enrollment(served_hub, f"LATENCY-OK-{n}")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await send_enrollment(served_hub, "LATENCY-FAIL-1")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    folder = hub_file_stores / "ftp" / "outbound" / "device-score"
    folder.mkdir(parents=True)
    (folder / "SDCSE_20261204_1.csv").write_text(DEVICE_SCORES)
    await log_in(page)
    await follow(page.get_by_role("link", name="Schedules"))
    ftp = page.locator("#schedule-device_score_ftp")
    await ftp.get_by_role("button", name="Run now").click()
    await expect(ftp.locator(".last-run .status")).to_have_text("succeeded")

    await follow(page.get_by_role("link", name="Dashboard"))
    chart = page.get_by_role("img", name="latency per target: median and 95th percentile")
    await expect(chart).to_be_visible()
    await screenshot(page, "dashboard-charts")
    shown = [LATENCY_TITLE.fullmatch(t) for t in await titles(chart, "rect title")]
    numbers = await titles(chart, "text.numbers")
    latency = await operator_reads(served_hub, "/ops/latency", window="24h")

    targets = latency["targets"]
    assert {t["target"] for t in targets} == {"CPMCS", "DERMS default", "ftp"}
    assert [t["target"] for t in targets] == await titles(chart, "text.target")
    assert sorted(m.groups() for m in shown if m) == sorted(
        (t["target"], percentile, ms(t[f"{percentile}_ms"]), str(t["calls"]))
        for t in targets
        for percentile in ("p50", "p95")
    )
    assert numbers == [
        f"p50 {ms(t['p50_ms'])} · p95 {ms(t['p95_ms'])} · {t['calls']} call"
        + ("s" if t["calls"] != 1 else "")
        + (f", {t['failed']} failed" if t["failed"] else "")
        for t in targets
    ]
    cpmcs = next(t for t in targets if t["target"] == "CPMCS")
    assert (cpmcs["calls"], cpmcs["failed"]) == (4, 1)
    for target in await chart.locator("text.target").all_text_contents():
        median = await chart.locator("rect.p50", has_text=f"{target}: p50").bounding_box()
        slow = await chart.locator("rect.p95", has_text=f"{target}: p95").bounding_box()
        assert median is not None and slow is not None
        assert 0 < median["width"] <= slow["width"]
    assert not [text for text in refusals if "Content Security Policy" in text]


async def send_the_first_segment_only(
    hub: ServedHub, lookups: Lookups, instance_id: str, seconds_since_receipt: float
) -> None:
    """The file's first segment taken by CPMCS and the others waiting, `seconds_since_receipt`
    after the file came, as a worker that stopped after its first call leaves them."""
    worker = build_hub(hub.settings, lookups)
    try:
        while await worker.workers.worker.step():
            pass
        async with worker.store.engine.begin() as connection:
            # What followed the first segment's call: the other segments' and the
            # acknowledgement's.
            await connection.execute(
                delete(ActivityRow).where(
                    ActivityRow.instance_id == instance_id, ActivityRow.seq > 2
                )
            )
            latest_call = await connection.scalar(
                select(func.max(ActivityRow.at)).where(ActivityRow.instance_id == instance_id)
            )
            assert latest_call is not None
            await connection.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(
                    status="in_progress",
                    finished_at=None,
                    received_at=as_utc(latest_call) - timedelta(seconds=seconds_since_receipt),
                )
            )
            await connection.execute(
                update(SegmentRow)
                .where(SegmentRow.instance_id == instance_id, SegmentRow.seq > 1)
                .values(status="pending")
            )
            await connection.execute(
                update(FileJobRow)
                .where(FileJobRow.instance_id == instance_id)
                .values(state="running", outcome=None)
            )
    finally:
        await worker.aclose()


async def test_a_file_in_progress_shows_its_segments_pace_and_time_left_as_the_api_gives(
    page: Page, hub_without_workers: ServedHub, default_lookups: Lookups, tmp_path: Path
) -> None:
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text))
    message = {
        "messageId": "RSV-BROWSER",
        "eventId": "EV-BROWSER",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", 9)
    async with httpx.AsyncClient(base_url=hub_without_workers.url, timeout=30) as derms:
        sent = await derms.post(
            "/device-reservation-to-dacs",
            data={"message": json.dumps(message)},
            files={"file": ("reservations.csv", csv_file.read_bytes(), "text/csv")},
            auth=DERMS_AUTH,
        )
    instance_id = sent.json()["instanceId"]
    await send_the_first_segment_only(hub_without_workers, default_lookups, instance_id, 20)

    await log_in(page)
    await page.goto(f"/console/instances/{instance_id}")
    bar = page.get_by_role("img", name="segments by state")
    await expect(bar).to_be_visible()
    await screenshot(page, "file-progress")
    parts = [SEGMENT_TITLE.fullmatch(t) for t in await titles(bar, "rect.part title")]
    pace = await page.locator("#pace").text_content()
    detail = await operator_reads(hub_without_workers.url, f"/ops/instances/{instance_id}")

    file = detail["file"]
    assert (detail["status"], file["state"]) == ("in_progress", "running")
    assert [a["operation"] for a in detail["activities"]] == ["healthCheck", "reserveDevice"]
    assert {m.group(1): m.group(2) for m in parts if m} == {
        state: str(n) for state, n in file["segments"].items() if n
    }
    assert len(parts) == 2
    assert {state for state, n in file["segments"].items() if n} == {"accepted", "pending"}
    received = datetime.fromisoformat(detail["received_at"])
    latest = max(datetime.fromisoformat(a["at"]) for a in detail["activities"])
    rate = file["rows_sent"] / (latest - received).total_seconds()
    left = int((file["total_rows"] - file["rows_sent"]) / rate)
    assert (file["rows_sent"], file["total_rows"]) == (2, 9)
    shown_left = f"{left // 60} min {left % 60} s"
    assert pace == f"{rate:.1f} rows/s since the file came; at that pace, {shown_left} left"
    track = await bar.locator("rect.track").bounding_box()
    assert track is not None
    for state, n in file["segments"].items():
        if n:
            box = await bar.locator(f"rect.part.{state}").bounding_box()
            assert box is not None
            assert box["width"] == pytest.approx(
                track["width"] * n / sum(file["segments"].values()), abs=1
            )
    assert not [text for text in refusals if "Content Security Policy" in text]


async def test_a_wrong_password_is_refused(page: Page) -> None:
    await log_in(page, password="not-the-password")

    await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()


async def test_a_form_posted_without_its_csrf_token_is_refused(page: Page) -> None:
    await log_in(page)
    await page.goto("/console/lookups/ConfigProps")
    await page.locator("form.lookup-edit input[name=csrf_token]").evaluate(
        "input => input.remove()"
    )

    await page.get_by_role("button", name="Save").click()

    await expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("Nothing was done")


async def test_the_lookups_and_connections_pages_show_what_is_in_force(page: Page) -> None:
    await log_in(page)

    await follow(page.get_by_role("link", name="Lookups"))
    await follow(page.get_by_role("link", name="OUTL-BRT-DACS_DRMS_ConfigProps"))
    await expect(page.get_by_label("value of row 2")).to_have_value("true")
    await page.get_by_label("value of row 2").fill("maybe")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("must be true or false")
    await page.get_by_label("value of row 2").fill("false")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.locator("table.audit")).to_contain_text("true → false")
    await screenshot(page, "lookups")

    await follow(page.get_by_role("link", name="Connections"))
    await expect(page.locator("table.connections")).to_contain_text("CPMCS")
    await expect(page.locator("table.connections tbody tr").first).to_contain_text("yes")
    await screenshot(page, "connections")


async def test_an_operator_runs_a_schedule_now_and_watches_its_outcome(
    page: Page, hub_file_stores: Path, derms_sim: httpx.Client
) -> None:
    folder = hub_file_stores / "ftp" / "outbound" / "device-score"
    folder.mkdir(parents=True)
    (folder / "SDCSE_20261126_1.csv").write_text(DEVICE_SCORES)
    await log_in(page)
    await follow(page.get_by_role("link", name="Schedules"))
    ftp = page.locator("#schedule-device_score_ftp")
    await expect(ftp).to_contain_text("0 2 * * * Europe/Paris")
    await expect(ftp.locator(".last-run")).to_have_text("never run")
    await expect(page.locator("#schedule-device_score_os")).to_contain_text("no schedule")

    await ftp.get_by_role("button", name="Run now").click()

    await expect(page.get_by_role("status")).to_contain_text(
        "Device Score FTP Transfer started now as instance"
    )
    await expect(ftp.locator(".last-run .status")).to_have_text("succeeded")
    await expect(ftp).not_to_have_class("running")
    await screenshot(page, "schedules")

    (folder / "SDCSE_20261126_2.csv").write_text(DEVICE_SCORES)
    derms_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    await ftp.get_by_role("button", name="Run now").click()

    await expect(ftp.locator(".last-run .status")).to_have_text("failed")
    await expect(ftp.locator(".last-run")).to_contain_text("0 sent, 1 not sent")
    await follow(page.locator("#run-link"))
    await expect(page.locator("h1 .status")).to_have_text("failed")
    await expect(page.locator("#error")).to_contain_text("0 sent, 1 not sent")
    await expect(page.locator("table.activities")).to_contain_text("deviceScore")
