"""Who may call the hub: every refused credential is a 401 problem before the body is read."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub
from derms_bridge.credentials import hash_password, hash_token
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread, free_port
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Smtp
from derms_bridge.settings.connections import Caller
from tests.conftest import (
    CPMCS_AUTH,
    DERMS_AUTH,
    OPERATOR_AUTH,
    PASSWORDS,
    HubUnderTest,
    empty_tables,
    hub_settings,
)
from tests.payloads import enrollment_message, enrollment_request

REPO_ROOT = Path(__file__).resolve().parents[3]
PROBLEM_JSON = "application/problem+json"
DERMS_TOKEN = "derms-bearer-token-0123456789"
SERVE_TIMEOUT_SECONDS = 60


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def a_valid_message() -> dict[str, Any]:
    return enrollment_message(enrollment_request("SEC-1"))


def assert_unauthorized(reply: httpx.Response) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    challenge = reply.headers["www-authenticate"]
    assert "Basic" in challenge and "Bearer" in challenge
    problem = reply.json()
    assert problem["status"] == 401
    assert problem["title"] and problem["detail"] and problem["type"]


async def assert_nothing_happened(client: httpx.AsyncClient, cpmcs_sim: httpx.Client) -> None:
    listed = await client.get("/ops/instances", auth=OPERATOR_AUTH)
    assert listed.json()["total"] == 0
    assert cpmcs_sim.get("/_sim/state/calls").json() == {}


async def test_the_derms_credential_is_let_in(hub: HubUnderTest, cpmcs_sim: httpx.Client) -> None:
    # The refusals below are about the credential: the same request with the right one works.
    reply = await hub.client.post(
        "/enroll-to-dacs", json=a_valid_message(), headers={"authorization": basic(*DERMS_AUTH)}
    )

    assert reply.status_code == 200
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1


async def test_no_credential_is_401_with_a_challenge(
    hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await hub.client.post("/enroll-to-dacs", json=a_valid_message())

    assert_unauthorized(reply)
    await assert_nothing_happened(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"enrollmentRequests": ['),
        ("text/plain", b"not even JSON"),
    ],
    ids=["malformed-json", "wrong-content-type"],
)
async def test_a_stranger_is_refused_before_the_body_is_looked_at(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, content_type: str, body: bytes
) -> None:
    # A 422 or 415 here would tell a stranger how the hub reads its input.
    reply = await hub.client.post(
        "/enroll-to-dacs", content=body, headers={"content-type": content_type}
    )

    assert_unauthorized(reply)
    await assert_nothing_happened(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    "authorization",
    [
        basic("derms", "not-the-password"),
        basic("derms", ""),
        basic("nobody", PASSWORDS["derms"]),
        basic(*CPMCS_AUTH),
        basic(*OPERATOR_AUTH),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-at-all").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Digest username=derms",
        "Bearer " + PASSWORDS["derms"],
    ],
    ids=[
        "wrong-password",
        "empty-password",
        "unknown-user",
        "cpmcs-credential",
        "operator-credential",
        "garbage",
        "no-colon",
        "not-utf8",
        "scheme-only",
        "other-scheme",
        "password-as-token",
    ],
)
async def test_a_wrong_credential_on_the_derms_route_is_401(
    hub: HubUnderTest, cpmcs_sim: httpx.Client, authorization: str
) -> None:
    reply = await hub.client.post(
        "/enroll-to-dacs", json=a_valid_message(), headers={"authorization": authorization}
    )

    assert_unauthorized(reply)
    await assert_nothing_happened(hub.client, cpmcs_sim)


@pytest.mark.parametrize(
    "auth",
    [None, DERMS_AUTH, CPMCS_AUTH, ("operator", "not-the-password")],
    ids=["none", "derms", "cpmcs", "wrong-password"],
)
async def test_only_the_operator_may_read_instances(
    hub: HubUnderTest, auth: tuple[str, str] | None
) -> None:
    await hub.client.post("/enroll-to-dacs", json=a_valid_message(), auth=DERMS_AUTH)

    refused = await hub.client.get("/ops/instances", auth=auth)
    allowed = await hub.client.get("/ops/instances", auth=OPERATOR_AUTH)

    assert_unauthorized(refused)
    assert allowed.json()["total"] == 1


@pytest.fixture
async def token_hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> AsyncIterator[HubUnderTest]:
    """The hub with one more DERMS caller, known only by the hash of its bearer token."""
    empty_tables(database_url)
    with_token = {
        **callers,
        "derms-token": Caller(role="derms", token_sha256=hash_token(DERMS_TOKEN)),
    }
    settings = hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, with_token)
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield HubUnderTest(hub=built, client=client, settings=settings)
    await built.aclose()


async def test_the_right_bearer_token_is_let_in_as_its_caller(
    token_hub: HubUnderTest, cpmcs_sim: httpx.Client
) -> None:
    reply = await token_hub.client.post(
        "/enroll-to-dacs",
        json=a_valid_message(),
        headers={"authorization": f"Bearer {DERMS_TOKEN}"},
    )

    assert reply.status_code == 200
    assert len(cpmcs_sim.get("/_sim/state/enrollments").json()) == 1
    listed = await token_hub.client.get("/ops/instances", auth=OPERATOR_AUTH)
    assert [i["caller"] for i in listed.json()["items"]] == ["derms-token"]


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {DERMS_TOKEN}x",
        f"Bearer {DERMS_TOKEN[:-1]}",
        "Bearer ",
        f"Bearer {hash_token(DERMS_TOKEN)}",
        basic("derms-token", DERMS_TOKEN),
    ],
    ids=["longer", "shorter", "empty", "the-hash-itself", "token-as-password"],
)
async def test_a_wrong_bearer_token_is_401(
    token_hub: HubUnderTest, cpmcs_sim: httpx.Client, authorization: str
) -> None:
    reply = await token_hub.client.post(
        "/enroll-to-dacs", json=a_valid_message(), headers={"authorization": authorization}
    )

    assert_unauthorized(reply)
    await assert_nothing_happened(token_hub.client, cpmcs_sim)


async def test_a_derms_token_does_not_open_the_operations_api(token_hub: HubUnderTest) -> None:
    reply = await token_hub.client.get(
        "/ops/instances", headers={"authorization": f"Bearer {DERMS_TOKEN}"}
    )

    assert_unauthorized(reply)


def test_a_caller_with_a_hashed_password_or_a_token_is_accepted() -> None:
    # The refusals below are about the credential's form, not about Caller as such.
    assert Caller(role="derms", username="derms", password_hash=hash_password("pw")).username
    assert Caller(role="derms", token_sha256=hash_token("token")).token_sha256 is not None


def test_a_plain_text_password_is_refused() -> None:
    with pytest.raises(ValidationError, match="argon2"):
        Caller(role="derms", username="derms", password_hash="derms-test-pw")


def test_a_caller_without_a_credential_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs username and password_hash, or token_sha256"):
        Caller(role="operator")


def test_a_username_without_a_password_hash_is_refused() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Caller(role="operator", username="operator", token_sha256=hash_token("token"))


def settings_without_callers(directory: Path) -> Path:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "database": {"url": f"sqlite:///{directory / 'hub.db'}"},
        "connections": {
            "cpmcs": {"base_url": nowhere},
            "derms": {"default": {"base_url": nowhere}},
        },
        "lookups_dir": str(REPO_ROOT / "config" / "lookups"),
    }
    path = directory / "derms-bridge.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The console script sits next to the interpreter running the tests (the venv's bin).
    command = Path(sys.executable).parent / "derms-bridge"
    # Variables of the developer's shell must not add callers behind the test's back.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}
    environment["COLUMNS"] = "200"
    return subprocess.run(  # noqa: S603
        [str(command), *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_SECONDS,
        check=False,
    )


def test_the_settings_without_callers_are_otherwise_valid(tmp_path: Path) -> None:
    # So that the refusal to serve below is about callers and nothing else in the file.
    checked = run_cli(
        "check-config", "--config", str(settings_without_callers(tmp_path)), cwd=tmp_path
    )

    assert checked.returncode == 0, checked.stderr
    assert "0 callers" in checked.stdout


def test_serve_refuses_to_start_without_callers(tmp_path: Path) -> None:
    # Were it to start, it would serve until the timeout and the test would fail there.
    served = run_cli("serve", "--config", str(settings_without_callers(tmp_path)), cwd=tmp_path)

    assert served.returncode != 0
    assert "no callers are configured" in served.stderr
    assert "callers:" in served.stderr


async def test_a_hub_started_with_a_password_sent_without_tls_logs_a_warning_without_it(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = hub_settings(
        database_url, cpmcs_server.url, derms_server.url, mailbox, callers
    ).model_copy(update={"smtp": Smtp(host="mail.example", port=25, password="s3cret-smtp")})

    with caplog.at_level(logging.WARNING, logger="derms_bridge.bootstrap"):
        built = build_hub(settings, default_lookups)
    await built.aclose()

    assert [record.getMessage() for record in caplog.records] == [
        "unsafe setting: smtp: a password is set but security is none, so it goes to the "
        "mail server unencrypted (set smtp.security to starttls or tls)"
    ]
    assert "s3cret" not in caplog.text
