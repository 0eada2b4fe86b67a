"""What the console answers when it cannot answer: its own HTML page, with the status, and
never what went wrong inside (no traceback, no secret)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.schemas.ops import BUSINESS_KEY_CHARS, InstanceFilter, InstancePage
from derms_bridge.settings.connections import Caller
from tests.conftest import empty_tables, hub_settings
from tests.integration.console.conftest import (
    ConsoleUnderTest,
    console_settings,
    copy_of_lookups,
    page_text,
)

SECRET = "s3cret-in-the-fault"


@pytest.fixture
async def console_with_faults(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[ConsoleUnderTest]:
    """The console, as a browser meets it: a fault inside is an answer, not an exception."""
    empty_tables(database_url)
    settings = console_settings(
        hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers),
        copy_of_lookups(tmp_path / "lookups"),
    )
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield ConsoleUnderTest(hub=built, client=client, settings=settings)
    await built.aclose()


def assert_console_page(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.headers["x-frame-options"] == "DENY"
    return page_text(reply.text)


async def test_an_unexpected_fault_is_the_consoles_error_page_and_no_more(
    console_with_faults: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    await console_with_faults.log_in()

    async def broken_search(_selection: InstanceFilter) -> NoReturn:
        raise RuntimeError(f"the search broke, password={SECRET}")

    monkeypatch.setattr(console_with_faults.hub.operations, "search", broken_search)

    reply = await console_with_faults.client.get("/console/instances")

    text = assert_console_page(reply, 500)
    assert "The console met an unexpected error" in text
    assert SECRET not in reply.text
    assert "Traceback" not in reply.text
    assert "RuntimeError" not in reply.text


async def test_an_unknown_console_page_is_the_consoles_404_page(
    console_with_faults: ConsoleUnderTest,
) -> None:
    await console_with_faults.log_in()

    reply = await console_with_faults.client.get("/console/no-such-page")

    assert "There is no such page." in assert_console_page(reply, 404)


async def test_a_method_a_page_does_not_take_is_the_consoles_405_page(
    console_with_faults: ConsoleUnderTest,
) -> None:
    await console_with_faults.log_in()

    reply = await console_with_faults.client.delete("/console/instances")

    assert "does not take this kind of request" in assert_console_page(reply, 405)
    assert reply.headers["allow"] == "GET"


@pytest.mark.parametrize("key", ["K" * (BUSINESS_KEY_CHARS + 1), "NUL\x00KEY"], ids=["long", "nul"])
async def test_a_key_no_instance_can_have_is_named_and_left_out(
    console_with_faults: ConsoleUnderTest, key: str
) -> None:
    await console_with_faults.log_in()

    reply = await console_with_faults.client.get("/console/instances", params={"key": key})

    text = assert_console_page(reply, 200)
    assert f"a key is at most {BUSINESS_KEY_CHARS} characters, none of them NUL" in text


async def test_the_apis_unexpected_fault_is_a_problem_and_no_more(
    console_with_faults: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_search(_selection: InstanceFilter) -> InstancePage:
        raise RuntimeError(f"the search broke, password={SECRET}")

    monkeypatch.setattr(console_with_faults.hub.operations, "search", broken_search)

    reply = await console_with_faults.client.get(
        "/ops/instances", auth=("operator", "operator-test-pw")
    )

    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["detail"] == "the hub met an unexpected error; it is in the hub's log"
    assert SECRET not in reply.text
    assert "Traceback" not in reply.text
