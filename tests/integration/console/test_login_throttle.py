"""The console's login goes through the hub's one login throttle: wrong logins sent at once
are checked no more than the limit allows, a locked-out address does not lock the user out
from elsewhere, and the console and the API count the same failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from derms_bridge.api.app import create_app
from tests.conftest import OPERATOR_AUTH
from tests.integration.api.test_login_throttle import ATTACKER, ELSEWHERE, guess, password_checks
from tests.integration.console.conftest import ConsoleUnderTest, csrf_of


def console_at(console: ConsoleUnderTest, address: str) -> ConsoleUnderTest:
    transport = httpx.ASGITransport(app=create_app(console.hub), client=(address, 50000))
    client = httpx.AsyncClient(transport=transport, base_url="http://hub.test", timeout=30)
    return ConsoleUnderTest(hub=console.hub, client=client, settings=console.settings)


async def test_wrong_logins_sent_at_once_are_checked_no_more_than_allowed(
    console: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = console.settings.login_throttle.per_user_and_address
    checked = password_checks(console.hub, monkeypatch)
    csrf = csrf_of((await console.client.get("/console/login")).text)
    forms = [
        {"username": "operator", "password": f"guess-{n}", "csrf_token": csrf} for n in range(15)
    ]

    replies = await asyncio.gather(
        *(console.client.post("/console/login", data=form) for form in forms)
    )

    codes = [reply.status_code for reply in replies]
    assert len(checked) == allowed
    assert (codes.count(401), codes.count(429)) == (allowed, 15 - allowed)
    assert (await console.log_in()).status_code == 429


async def test_a_locked_out_address_does_not_lock_the_operator_out_elsewhere(
    console: ConsoleUnderTest,
) -> None:
    allowed = console.settings.login_throttle.per_user_and_address
    for _ in range(allowed):
        assert (await console.log_in(password="a-guess")).status_code == 401
    assert (await console.log_in()).status_code == 429

    elsewhere = console_at(console, ELSEWHERE)
    async with elsewhere.client:
        assert (await elsewhere.log_in()).status_code == 303


async def test_the_console_and_the_api_count_the_same_failures(console: ConsoleUnderTest) -> None:
    allowed = console.settings.login_throttle.per_user_and_address
    at_the_console = console_at(console, ATTACKER)
    async with (
        at_the_console.client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(console.hub), client=(ATTACKER, 50001)),
            base_url="http://hub.test",
        ) as api,
    ):
        assert await guess(api) == 401
        for _ in range(allowed - 2):
            assert (await at_the_console.log_in(password="a-guess")).status_code == 401
        assert await guess(api) == 401

        assert (await at_the_console.log_in()).status_code == 429
        assert (await api.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429
