"""A flow's trigger route, taken the plain way (api/plain_triggers.py), answers as the rest
of the API does: an unexpected fault is a problem document and no more, a method the route
does not take is a problem, and its path with a trailing slash is redirected as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from derms_bridge.bootstrap import build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import DERMS_AUTH, HubUnderTest, empty_tables, hub_settings, serving
from tests.payloads import enrollment_message, enrollment_request

SECRET = "s3cret-in-the-fault"
ROUTE = "/enroll-to-dacs"


@pytest.fixture
async def hub_raising(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[HubUnderTest]:
    """The hub, its client answered even when the app raises (as uvicorn answers)."""
    empty_tables(database_url)
    settings = hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers)
    built = build_hub(settings, default_lookups)
    async with serving(built, tmp_path, raise_app_exceptions=False) as under_test:
        yield under_test


async def test_an_unexpected_fault_in_a_trigger_is_a_problem_and_no_more(
    hub_raising: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_run(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"the engine broke, password={SECRET}")

    monkeypatch.setattr(hub_raising.hub.engine, "run_sync", broken_run)

    reply = await hub_raising.client.post(
        ROUTE, json=enrollment_message(enrollment_request("FAULT-1")), auth=DERMS_AUTH
    )

    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["detail"] == "the hub met an unexpected error; it is in the hub's log"
    assert SECRET not in reply.text
    assert "Traceback" not in reply.text


async def test_a_method_the_trigger_does_not_take_is_a_405_problem(hub: HubUnderTest) -> None:
    reply = await hub.client.get(ROUTE, auth=DERMS_AUTH)

    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["allow"] == "POST"


async def test_a_trigger_with_a_trailing_slash_is_redirected_to_the_route(
    hub: HubUnderTest,
) -> None:
    reply = await hub.client.post(
        ROUTE + "/", json=enrollment_message(enrollment_request("SLASH-1")), auth=DERMS_AUTH
    )

    assert reply.status_code == 307, reply.text
    assert reply.headers["location"] == "http://hub.test" + ROUTE
