"""Debian's Chromium driven by Playwright against a hub served by uvicorn on loopback.

One browser for the whole session; each test gets its own context (cookies) and its own hub.
DERMS_BRIDGE_CONSOLE_SCREENSHOTS=1 writes the pages' screenshots into docs/console/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.ftp_server import FtpServer
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Schedule, Segments, Settings
from derms_bridge.settings.connections import Caller
from derms_bridge.settings.file_storage import FtpSettings
from derms_bridge.store.database import migrate
from tests.conftest import ROOT, hub_settings
from tests.integration.console.conftest import (
    console_settings,
    copy_of_lookups,
    local_store_settings,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "docs" / "console"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class ServedHub:
    url: str
    settings: Settings


@pytest.fixture
def hub_file_stores(tmp_path: Path) -> Path:
    """The served hub's file stores: folders ftp/ and object-storage/ under this one."""
    return tmp_path / "file-stores"


@pytest.fixture
def served_settings(
    tmp_path: Path,
    hub_file_stores: Path,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
) -> Iterator[Settings]:
    """The hub's settings, console on, on a fresh SQLite file, flow 16 scheduled nightly,
    CPMCS's FTP server the sandbox's over the folder ftp/ of `hub_file_stores`, for as long
    as that server runs."""
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(database_url)
    stores = local_store_settings(hub_file_stores)
    with FtpServer(hub_file_stores / "ftp", "cpmcs", "cpmcs-ftp-test") as ftp:
        yield console_settings(
            hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers),
            copy_of_lookups(tmp_path / "lookups"),
        ).model_copy(
            update={
                "file_stores": stores.model_copy(
                    update={
                        "ftp": FtpSettings(
                            host="127.0.0.1",
                            port=ftp.port,
                            username="cpmcs",
                            password="cpmcs-ftp-test",
                            timeout=5,
                        )
                    }
                ),
                "schedules": {
                    "device_score_ftp": Schedule(cron="0 2 * * *", timezone="Europe/Paris")
                },
            }
        )


@pytest.fixture
def served_hub(
    served_settings: Settings,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    default_lookups: Lookups,
) -> Iterator[str]:
    """The hub of `served_settings`, its workers running in it; its base URL."""
    with ServerThread(
        create_app(build_hub(served_settings, default_lookups)), name="hub"
    ) as server:
        yield server.url


@pytest.fixture
def hub_without_workers(
    served_settings: Settings,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    default_lookups: Lookups,
) -> Iterator[ServedHub]:
    """The hub of `served_settings` cutting files in segments of 2 rows, with no worker:
    a test sends the segments itself, as a `worker` process on its database would."""
    settings = served_settings.model_copy(update={"segments": Segments(size=2, parallelism=1)})
    with ServerThread(
        create_app(build_hub(settings, default_lookups), run_workers=False), name="hub"
    ) as server:
        yield ServedHub(server.url, settings)


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page on the served hub: `hub_without_workers` when the test asks for it, else
    `served_hub`."""
    if "hub_without_workers" in request.fixturenames:
        base_url = request.getfixturevalue("hub_without_workers").url
    else:
        base_url = request.getfixturevalue("served_hub")
    context = await browser.new_context(base_url=base_url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(10_000)
    opened = await context.new_page()
    yield opened
    await context.close()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Kept in docs/console/ when DERMS_BRIDGE_CONSOLE_SCREENSHOTS=1; else nothing is written.
    Without `full_page`, only what the window shows (a page of a hundred activities is
    thousands of pixels long)."""
    if os.environ.get("DERMS_BRIDGE_CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page)


async def follow(link: Locator) -> None:
    """Click what opens another page, and wait until that page has loaded: htmx wires its
    buttons and fields only then, and a click before that does nothing. A link's page is
    waited for by its address, so that a search pushing its own into the history in the
    meantime is not taken for it."""
    href = await link.get_attribute("href")
    opened = urljoin(link.page.url, href) if href else None
    async with link.page.expect_navigation(url=opened):
        await link.click()
