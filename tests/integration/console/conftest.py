"""A hub with its console on, its lookups in a folder of its own, and a browser-like client."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import Hub, build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Settings, WebConsole
from derms_bridge.settings.connections import Caller
from derms_bridge.settings.file_storage import FileStorageSettings, LocalFolderSettings
from tests.conftest import LOOKUPS_DIR, PASSWORDS, empty_tables, hub_settings

SESSION_SECRET = "console-test-secret-" + "x" * 20
OPERATOR = ("operator", PASSWORDS["operator"])
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def copy_of_lookups(folder: Path) -> Path:
    shutil.copytree(LOOKUPS_DIR, folder)
    return folder


def local_store_settings(root: Path) -> FileStorageSettings:
    """Both of CPMCS's file stores as folders under `root`, made if need be."""
    stores = FileStorageSettings(
        ftp=LocalFolderSettings(root=root / "ftp"),
        object_storage=LocalFolderSettings(root=root / "object-storage"),
    )
    for store in (stores.ftp, stores.object_storage):
        assert isinstance(store, LocalFolderSettings)
        store.root.mkdir(parents=True, exist_ok=True)
    return stores


def device_score_folder(settings: Settings) -> Path:
    """Where flow 16 finds its files (ConfigProps dacs.dvcScore.ftp.input.directory)."""
    store = settings.file_stores.ftp
    assert isinstance(store, LocalFolderSettings)
    folder = store.root / "outbound" / "device-score"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def console_settings(settings: Settings, lookups_dir: Path, **console: object) -> Settings:
    return settings.model_copy(
        update={
            "lookups_dir": lookups_dir,
            "console": WebConsole.model_validate({"session_secret": SESSION_SECRET, **console}),
        }
    )


@dataclass
class ConsoleUnderTest:
    hub: Hub
    client: httpx.AsyncClient
    settings: Settings
    csrf_token: str = ""

    async def log_in(
        self, username: str = OPERATOR[0], password: str = OPERATOR[1]
    ) -> httpx.Response:
        page = await self.client.get("/console/login")
        self.csrf_token = csrf_of(page.text)
        reply = await self.client.post(
            "/console/login",
            data={"username": username, "password": password, "csrf_token": self.csrf_token},
        )
        if reply.status_code == 303:
            self.csrf_token = csrf_of((await self.client.get("/console/")).text)
        return reply

    async def post(
        self, path: str, data: dict[str, str] | None = None, **kwargs: object
    ) -> httpx.Response:
        """A form posted from a console page, its CSRF token included."""
        return await self.client.post(
            path,
            data={"csrf_token": self.csrf_token, **(data or {})},
            **kwargs,  # type: ignore[arg-type]
        )


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """Every table row of a page as the text of its cells."""
    parser = _Tables()
    parser.feed(html)
    return parser.rows


BAR_TITLE = re.compile(
    r'<rect class="bar [a-z_]+"[^>]*>'
    r"<title>(.+?), ([a-z ]+), (\d{4}-\d\d-\d\d \d\d:00) UTC: (\d+)</title>"
)


def chart_bars(html: str) -> list[tuple[str, str, datetime, int]]:
    """The dashboard's hourly bars as their titles give them: flow title, status, hour, count."""
    return [
        (
            flow,
            status.replace(" ", "_"),
            datetime.strptime(hour, "%Y-%m-%d %H:%M").replace(tzinfo=UTC),
            int(count),
        )
        for flow, status, hour, count in BAR_TITLE.findall(html)
    ]


def page_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def console_for(
    settings: Settings, lookups: Lookups, base_url: str
) -> AsyncIterator[ConsoleUnderTest]:
    built = build_hub(settings, lookups)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(built)), base_url=base_url, timeout=30
    ) as client:
        yield ConsoleUnderTest(hub=built, client=client, settings=settings)
    await built.aclose()


@pytest.fixture
async def console(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[ConsoleUnderTest]:
    """The hub on an empty database with its console on, over plain HTTP; its file stores
    are folders of the test's own."""
    empty_tables(database_url)
    settings = console_settings(
        hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers),
        copy_of_lookups(tmp_path / "lookups"),
    ).model_copy(update={"file_stores": local_store_settings(tmp_path / "file-stores")})
    async for under_test in console_for(settings, default_lookups, "http://hub.test"):
        yield under_test
