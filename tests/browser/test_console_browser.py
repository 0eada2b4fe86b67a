"""An operator in a real Chromium: log in, find a failed enrollment, resubmit it, run a
schedule now and watch its outcome, be refused."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, PASSWORDS
from tests.integration.console.conftest import chart_bars
from tests.payloads import enrollment_message, enrollment_request

DEVICE_SCORES = "deviceId,score\nD-1001,0.93\nD-1002,0.41\nD-1003,0.77\n"


async def log_in(page: Page, password: str = PASSWORDS["operator"]) -> None:
    await page.goto("/console/")
    await page.get_by_label("Username").fill("operator")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


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

    await page.get_by_role("link", name="Instances").click()
    await page.get_by_label("Business identifier").fill("BROWSER-FAIL-1")
    await expect(page.locator("#total")).to_have_text("1")
    await expect(page).to_have_url(re.compile(r"key=BROWSER-FAIL-1"))
    await screenshot(page, "instances")

    await page.locator("table.instances a").first.click()
    await expect(page.locator("#error")).to_contain_text("CPMCS answered HTTP 503")
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    await page.get_by_role("button", name="Resubmit").click()
    await expect(page.locator("#resubmitted")).to_contain_text("succeeded")
    await screenshot(page, "instance")

    await page.locator("#resubmitted-link").click()
    await expect(page.locator("h1 .status")).to_have_text("succeeded")
    await expect(page.get_by_text("resubmission of")).to_be_visible()


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

    await page.get_by_role("link", name="Lookups").click()
    await page.get_by_role("link", name="OUTL-BRT-DACS_DRMS_ConfigProps").click()
    await expect(page.get_by_label("value of row 2")).to_have_value("true")
    await page.get_by_label("value of row 2").fill("maybe")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("must be true or false")
    await page.get_by_label("value of row 2").fill("false")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.locator("table.audit")).to_contain_text("true → false")
    await screenshot(page, "lookups")

    await page.get_by_role("link", name="Connections").click()
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
    await page.get_by_role("link", name="Schedules").click()
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
    await page.locator("#run-link").click()
    await expect(page.locator("h1 .status")).to_have_text("failed")
    await expect(page.locator("#error")).to_contain_text("0 sent, 1 not sent")
    await expect(page.locator("table.activities")).to_contain_text("deviceScore")
