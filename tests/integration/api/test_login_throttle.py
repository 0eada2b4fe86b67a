"""One login throttle for every way in: after too many failures the API refuses a user from
an address, even with the right password, without checking it; the same user from another
address, and another user from the same address, still get in. The failures are counted
in the database by the pair, by the address and by the user."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import Hub, build_hub
from derms_bridge.settings import LoginLimits, Metrics
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, HubUnderTest

ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"


def client_at(built: Hub, address: str) -> httpx.AsyncClient:
    """A client of the hub's API that the hub sees coming from `address`."""
    transport = httpx.ASGITransport(
        app=create_app(built, run_workers=False), client=(address, 50000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://hub.test", timeout=30)


@asynccontextmanager
async def hub_with(hub: HubUnderTest, **settings: object) -> AsyncIterator[Hub]:
    """Another hub process on the same database, its settings changed by `settings`."""
    built = build_hub(hub.settings.model_copy(update=settings), hub.hub.lookups())
    try:
        yield built
    finally:
        await built.aclose()


def password_checks(built: Hub, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The user names whose password argon2 checks from now on, one entry per check."""
    checked: list[str] = []
    verify = built.authenticator.verify_password

    def counted(username: str, password: str) -> object:
        checked.append(username)
        return verify(username, password)

    monkeypatch.setattr(built.authenticator, "verify_password", counted)
    return checked


A_GUESS = "a-guess"


async def guess(
    client: httpx.AsyncClient, username: str = "operator", password: str = A_GUESS
) -> int:
    reply = await client.get("/ops/instances", auth=(username, password))
    return reply.status_code


async def test_after_the_failures_allowed_the_right_password_from_that_address_waits(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    checked = password_checks(hub.hub, monkeypatch)
    async with client_at(hub.hub, ATTACKER) as attacker:
        assert [await guess(attacker) for _ in range(allowed)] == [401] * allowed

        refused = await attacker.get("/ops/instances", auth=OPERATOR_AUTH)
        another_guess = await guess(attacker)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 0 < int(refused.headers["retry-after"]) <= 300
    assert refused.json()["status"] == 429
    assert another_guess == 429
    # Refused without a check: no argon2 for a throttled attempt.
    assert len(checked) == allowed


async def test_the_locked_out_user_still_gets_in_from_another_address(hub: HubUnderTest) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    async with client_at(hub.hub, ATTACKER) as attacker:
        for _ in range(allowed):
            await guess(attacker)
        assert (await attacker.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429
        # Another user from the locked address is not the pair that failed.
        derms = await attacker.post("/enroll-to-dacs", json={}, auth=DERMS_AUTH)
        assert derms.status_code == 422

    async with client_at(hub.hub, ELSEWHERE) as operator:
        assert (await operator.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200


async def test_a_login_forgives_only_its_own_address(hub: HubUnderTest) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    async with client_at(hub.hub, ATTACKER) as attacker, client_at(hub.hub, ELSEWHERE) as other:
        for _ in range(allowed - 1):
            assert await guess(attacker) == 401
        assert (await other.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200
        assert await guess(attacker) == 401

        assert (await attacker.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429


@pytest.mark.parametrize("verified_before", [False, True], ids=["first-login", "remembered"])
async def test_a_login_forgives_its_own_failures(hub: HubUnderTest, verified_before: bool) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    async with client_at(hub.hub, ATTACKER) as client:
        if verified_before:
            assert (await client.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200
        for _ in range(allowed - 1):
            assert await guess(client) == 401
        assert (await client.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200

        assert [await guess(client) for _ in range(allowed)] == [401] * allowed


async def test_failures_count_across_hub_processes(hub: HubUnderTest) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    async with client_at(hub.hub, ATTACKER) as first:
        for _ in range(allowed - 1):
            assert await guess(first) == 401
    async with hub_with(hub) as other_process, client_at(other_process, ATTACKER) as second:
        assert await guess(second) == 401
        assert (await second.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429


async def test_a_busy_callers_lockout_made_elsewhere_holds_here_a_moment_later(
    hub: HubUnderTest,
) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    async with client_at(hub.hub, ATTACKER) as busy:
        assert (await busy.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200
        async with hub_with(hub) as other_process, client_at(other_process, ATTACKER) as guesser:
            assert [await guess(guesser) for _ in range(allowed)] == [401] * allowed
        # Let in unread for at most CLEAR_FOR_SECONDS after its last read of the failures.
        answers = []
        for _ in range(100):
            answers.append((await busy.get("/ops/instances", auth=OPERATOR_AUTH)).status_code)
            if answers[-1] == 429:
                break
            await asyncio.sleep(0.1)
        assert answers[-1] == 429 and set(answers[:-1]) <= {200}


async def test_one_address_guessing_many_users_is_stopped_for_all_of_them(
    hub: HubUnderTest,
) -> None:
    limits = LoginLimits(per_user_and_address=5, per_address=3, per_user=50)
    async with hub_with(hub, login_throttle=limits) as built:
        async with client_at(built, ATTACKER) as attacker:
            assert [await guess(attacker, f"user-{n}") for n in range(3)] == [401] * 3
            assert (await attacker.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429
        async with client_at(built, ELSEWHERE) as operator:
            assert (await operator.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200


async def test_one_user_guessed_from_many_addresses_waits_everywhere(hub: HubUnderTest) -> None:
    limits = LoginLimits(per_user_and_address=2, per_address=20, per_user=4)
    async with hub_with(hub, login_throttle=limits) as built:
        for address in ("192.0.2.1", "192.0.2.2"):
            async with client_at(built, address) as attacker:
                assert [await guess(attacker), await guess(attacker)] == [401, 401]
        async with client_at(built, ELSEWHERE) as operator:
            assert (await operator.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 429
            # Another user is not held back by the one guessed.
            assert (
                await operator.post("/enroll-to-dacs", json={}, auth=DERMS_AUTH)
            ).status_code == 422


async def test_guesses_sent_at_once_are_checked_at_most_as_many_as_allowed(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    checked = password_checks(hub.hub, monkeypatch)
    async with client_at(hub.hub, ATTACKER) as attacker:
        codes = await asyncio.gather(*(guess(attacker, password=f"guess-{n}") for n in range(15)))

    assert len(checked) == allowed
    assert (codes.count(401), codes.count(429)) == (allowed, 15 - allowed)


async def test_one_guess_sent_many_times_at_once_is_one_failure(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = hub.settings.login_throttle.per_user_and_address
    checked = password_checks(hub.hub, monkeypatch)
    async with client_at(hub.hub, ATTACKER) as attacker:
        codes = await asyncio.gather(*(guess(attacker) for _ in range(15)))
        later = [await guess(attacker, password=f"guess-{n}") for n in range(allowed)]

    assert (codes, len(checked)) == ([401] * 15, 1 + allowed - 1)
    assert later == [401] * (allowed - 1) + [429]


async def test_a_callers_first_burst_with_the_right_password_is_let_in_whole(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = password_checks(hub.hub, monkeypatch)
    async with client_at(hub.hub, ELSEWHERE) as caller:
        replies = await asyncio.gather(
            *(caller.get("/ops/instances", auth=OPERATOR_AUTH) for _ in range(32))
        )

    assert [r.status_code for r in replies] == [200] * 32
    assert checked == ["operator"]


async def test_the_scrapers_token_is_throttled_with_the_rest(hub: HubUnderTest) -> None:
    token = "scraper-token-for-tests"
    scraper = Metrics(token_sha256=hashlib.sha256(token.encode()).hexdigest())
    allowed = hub.settings.login_throttle.per_user_and_address
    async with hub_with(hub, metrics=scraper) as built, client_at(built, ATTACKER) as attacker:
        for n in range(allowed):
            wrong = {"Authorization": f"Bearer not-the-token-{n}"}
            assert (await attacker.get("/metrics", headers=wrong)).status_code == 401

        right = {"Authorization": f"Bearer {token}"}
        refused = await attacker.get("/metrics", headers=right)
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        async with client_at(built, ELSEWHERE) as elsewhere:
            assert (await elsewhere.get("/metrics", headers=right)).status_code == 200
            scraped = (await elsewhere.get("/metrics", headers=right)).text
    assert 'derms_bridge_logins_throttled_total{way="metrics"}' in scraped


async def test_the_openapi_documents_the_throttles_answer(hub: HubUnderTest) -> None:
    document = (await hub.client.get("/openapi.json")).json()

    for path, method in [
        ("/ops/instances", "get"),
        ("/enroll-to-dacs", "post"),
        ("/metrics", "get"),
    ]:
        answer = document["paths"][path][method]["responses"]["429"]
        assert "Retry-After" in answer["headers"]


async def test_a_known_callers_burst_reads_the_failures_once(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once one failure from an address means reading the failures on every login from it,
    the requests in flight together share one read."""
    async with hub_with(hub) as built, client_at(built, ELSEWHERE) as caller:
        assert (await caller.get("/ops/instances", auth=OPERATOR_AUTH)).status_code == 200
        assert await guess(caller, "someone-else") == 401
        throttle, failures = built.login_throttle, built.login_throttle._failures
        reads: list[str] = []
        entered: list[str] = []
        all_in = asyncio.Event()
        all_waiting = asyncio.Event()
        admit, tallies = throttle.admit, failures.tallies

        async def counted_admit(*args: Any, **kwargs: Any) -> Any:
            entered.append("login")
            if len(entered) == 32:
                all_waiting.set()
            return await admit(*args, **kwargs)

        async def gated_tallies(user: str, address: str) -> Any:
            reads.append(user)
            await all_in.wait()
            return await tallies(user, address)

        monkeypatch.setattr(throttle, "admit", counted_admit)
        monkeypatch.setattr(failures, "tallies", gated_tallies)
        burst = [
            asyncio.ensure_future(caller.get("/ops/instances", auth=OPERATOR_AUTH))
            for _ in range(32)
        ]
        # Each login goes from the throttle's door to its read without waiting for anything,
        # so once the last has come in, every one has read or waits for a read.
        await all_waiting.wait()
        await asyncio.sleep(0)
        all_in.set()
        replies = await asyncio.gather(*burst)

    assert [r.status_code for r in replies] == [200] * 32
    assert reads == ["user:operator"]
