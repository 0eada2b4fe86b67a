"""Password checks never stall the hub: a flood of wrong passwords is checked off the event
loop, a few at a time, while other requests, and a caller whose password was verified
before, are answered at once. The hub serves on a real socket, in a thread of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.credentials import CHECKS_WAITING, hash_password
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.settings import LoginLimits
from derms_bridge.settings.connections import Caller
from tests.conftest import OPERATOR_AUTH, PASSWORDS, HubUnderTest

FLOOD = 20


@pytest.fixture(scope="module")
def callers() -> dict[str, Caller]:
    """The operator's password hashed at the real cost, which these tests are about."""
    return {
        "operator": Caller(
            role="operator", username="operator", password_hash=hash_password(PASSWORDS["operator"])
        )
    }


@pytest.fixture
async def served(hub: HubUnderTest) -> AsyncIterator[str]:
    # Each flood is of one user from one address, which the login throttle refuses unchecked
    # past a few (test_login_throttle.py); here every guess is let through to be checked.
    unthrottled = LoginLimits(per_user_and_address=10_000, per_address=10_000, per_user=10_000)
    built = build_hub(
        hub.settings.model_copy(update={"login_throttle": unthrottled}), hub.hub.lookups()
    )
    with ServerThread(create_app(built, run_workers=False), name="hub") as server:
        yield server.url
    await built.aclose()


async def test_a_flood_of_wrong_passwords_stalls_no_other_caller(served: str) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=60) as client:
        # The operator's password is verified once, then remembered.
        assert (await client.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200

        flood = [
            asyncio.create_task(client.get("/ops/instances", auth=("operator", f"guess{n}")))
            for n in range(FLOOD)
        ]
        await asyncio.sleep(0.05)  # let the flood reach the hub first
        health = await client.get("/healthz")
        known = await client.get("/ops/instances", auth=OPERATOR_AUTH)
        still_checking = sum(not task.done() for task in flood)

        assert health.status_code == 200
        assert known.status_code == 200
        # Each wrong password costs argon2's ~100 ms, two at a time: most of the flood is
        # still being checked when the others have their answers.
        assert still_checking >= FLOOD // 2, still_checking
        assert [reply.status_code for reply in await asyncio.gather(*flood)] == [401] * FLOOD


async def test_past_the_checks_that_may_wait_a_caller_is_told_to_come_back(served: str) -> None:
    async with httpx.AsyncClient(
        base_url=served, timeout=120, limits=httpx.Limits(max_connections=CHECKS_WAITING + 40)
    ) as client:
        replies = await asyncio.gather(
            *(
                client.get("/ops/instances", auth=("operator", f"guess{n}"))
                for n in range(CHECKS_WAITING + 30)
            )
        )
    codes = [reply.status_code for reply in replies]
    assert set(codes) == {401, 503}
    busy = next(reply for reply in replies if reply.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"
