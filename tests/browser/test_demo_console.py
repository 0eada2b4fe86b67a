"""What an operator sees in the console while `derms-bridge sandbox --demo` plays its day: the
reservation file going, the outcome file failing while CPMCS is down, and the same instance
succeeding once DERMS has resent it. DERMS_BRIDGE_CONSOLE_SCREENSHOTS=1 keeps the pages in
docs/console/ (docs/sandbox.md shows them); DERMS_BRIDGE_DEMO_SCALE plays more of the day."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.e2e.test_sandbox_process import (
    STARTUP_SECONDS,
    Output,
    start_demo,
)
from tests.ports import ports_to_bind

SEED = 1
#: How long one moment of the day may take to come: the full day's reservation file included.
MOMENT_SECONDS = STARTUP_SECONDS + 600.0


@dataclass
class DemoProcess:
    process: subprocess.Popen[str]
    url: str
    stdout: Output

    async def moment(self, pattern: str) -> re.Match[str]:
        """The first line of the demo's output that matches, once it has been printed."""
        deadline = asyncio.get_running_loop().time() + MOMENT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            found = re.search(pattern, self.stdout.text, flags=re.MULTILINE)
            if found:
                return found
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.2)
        pytest.fail(f"the demo printed no line matching {pattern!r}:\n{self.stdout.text}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    port = ports_to_bind(6)
    scale = os.environ.get("DERMS_BRIDGE_DEMO_SCALE", "0.02")
    process = start_demo(tmp_path, port, seed=SEED, scale=scale, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    stdout = Output()
    reader = stdout.follow(process.stdout)
    try:
        yield DemoProcess(process, f"http://127.0.0.1:{port}", stdout)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=5)


@pytest.fixture
async def demo_page(browser: Browser, demo: DemoProcess) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=demo.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(30_000)
    opened = await context.new_page()
    yield opened
    await context.close()


async def test_the_console_shows_the_demo_file_the_outage_and_the_recovery(
    demo: DemoProcess, demo_page: Page
) -> None:
    page = demo_page
    await demo.moment(r"^demo 05:00")
    await page.goto("/console/")
    await page.get_by_label("Username").fill("operator")
    await page.get_by_label("Password").fill("operator-sandbox")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    reservation = await demo.moment(r"^\s+(RSV-\S+): [\d,]+ bytes taken, instance (\S+)$")
    await page.goto(f"/console/instances/{reservation[2]}")
    await expect(page.locator("#instance-id")).to_have_text(reservation[2])
    await expect(page.get_by_text(reservation[1]).first).to_be_visible()
    await screenshot(page, "demo-reservation")

    outcome = await demo.moment(r"^\s+(OUT-\S+): FAILURE acknowledged .*instance (\S+)$")
    # DERMS's resend may already be going (a short day's outage lasts seconds): the run
    # that failed stays in the instance's activities whatever its status now.
    await page.goto(f"/console/instances/{outcome[2]}")
    await expect(page.get_by_text("no answer").first).to_be_visible()
    await expect(
        page.get_by_text("CPMCS broke the connection during healthCheck").first
    ).to_be_visible()
    await screenshot(page, "demo-outage")
    await page.goto("/console/")
    await expect(page.get_by_role("link", name="Event Device Outcome").first).to_be_visible()
    await screenshot(page, "demo-outage-dashboard", full_page=False)

    await demo.moment(r"^\s+OUT-\S+: SUCCESS after \d+ deliveries")
    await page.goto(f"/console/instances/{outcome[2]}")
    await expect(page.locator("h1 .status")).to_have_text("succeeded")
    await screenshot(page, "demo-recovered", full_page=False)

    await demo.moment(r"^demo: nothing lost$")
