"""Shared fixtures: real simulators and an SMTP sink on loopback, the hub on SQLite and PostgreSQL.

Every test that asks for `hub` runs twice, once per database. PostgreSQL must be
running (see .ci/run); DERMS_BRIDGE_TEST_POSTGRES=off leaves it out on purpose.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import (
    Hub,
    build_hub,
    local_file_stores,
)
from derms_bridge.lookups import Lookups, load_lookups
from derms_bridge.sandbox.cpmcs_sim import create_cpmcs_app
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Database, Limits, Segments, Settings, Smtp
from derms_bridge.settings.common import Timeouts
from derms_bridge.settings.connections import Caller, Connection, Connections
from derms_bridge.store.database import migrate

# The real FTP server and object store, for the store adapters' tests and the flows' alike.
from tests.stores import ftp_root, ftp_server, oci_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
LOOKUPS_DIR = ROOT / "config" / "lookups"
POSTGRES_ADMIN_URL = os.environ.get(
    "DERMS_BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

PASSWORDS = {"derms": "derms-test-pw", "cpmcs": "cpmcs-test-pw", "operator": "operator-test-pw"}
DERMS_AUTH = ("derms", PASSWORDS["derms"])
CPMCS_AUTH = ("cpmcs", PASSWORDS["cpmcs"])
OPERATOR_AUTH = ("operator", PASSWORDS["operator"])

# The hub verifies a hash at the cost written in it. At the real cost (hash_password: about
# 0.2 s of CPU per check) the first request of each caller in each hub test adds up to
# minutes of the suite; tests/integration/api/test_credential_floods.py, being about that
# cost, hashes at the real one.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def cheap_hash(password: str) -> str:
    """An argon2 hash of `password` that the hub checks in a millisecond."""
    return _CHEAP_HASHER.hash(password)


TABLES = (
    "login_failures",
    "console_logouts",
    "hub_processes",
    "staged_file_chunks",
    "staged_files",
    "schedule_ticks",
    "schedules",
    "lookup_audit",
    "segments",
    "file_jobs",
    "error_notices",
    "rejection_emails",
    "activities",
    "business_keys",
    "instances",
)


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers start with COLUMNS=80 in their environment, and rich's consoles
    # fix their width from it when first imported: the CLI's tests, which set COLUMNS for
    # each command they run, would get tables 80 columns wide.
    if hasattr(config, "workerinput"):
        os.environ.pop("COLUMNS", None)


def _backends() -> list[str]:
    if os.environ.get("DERMS_BRIDGE_TEST_POSTGRES", "on").lower() == "off":
        return ["sqlite"]
    return ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=_backends())
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database of each kind, for the whole session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.db'}"
        migrate(url)
        yield url
        return
    with postgres_database("derms_bridge_test") as url:
        yield url


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A migrated PostgreSQL database of its own, named `prefix` and a random suffix; its
    URL, and the database dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); start it "
            "(see .ci/run) or set DERMS_BRIDGE_TEST_POSTGRES=off to test on SQLite only"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_read_only(url: str, on: bool) -> None:
    """The PostgreSQL database of `url` made to refuse writes (or take them again) under
    the connections open to it, which are ended, as a failover would: they keep their
    old setting otherwise."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
            + ("on" if on else "off")
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def empty_tables(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # A session a failed test left in its transaction would hold the TRUNCATE, and
            # every test after it, until CI's limit: it is ended instead, the failure its own.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state LIKE 'idle in transaction%'"
                )
            )
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture(scope="session")
def cpmcs_server() -> Iterator[ServerThread]:
    with ServerThread(create_cpmcs_app(seed=1), name="CPMCS simulator") as server:
        yield server


@pytest.fixture(scope="session")
def derms_server() -> Iterator[ServerThread]:
    with ServerThread(create_derms_app(seed=2), name="DERMS simulator") as server:
        yield server


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def cpmcs_sim(cpmcs_server: ServerThread) -> Iterator[httpx.Client]:
    """The CPMCS simulator's admin side, reset for each test."""
    with httpx.Client(base_url=cpmcs_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        client.delete("/_sim/business-errors").raise_for_status()
        yield client


def refuse_calls(cpmcs_sim: httpx.Client, path: str, message_number: int, message: str) -> None:
    """The CPMCS simulator answers every call to `path` with this business error (ERROR)."""
    rule = {"path": path, "message_number": message_number, "message": message}
    cpmcs_sim.put("/_sim/business-errors", json={"rules": [rule]}).raise_for_status()


@pytest.fixture
def derms_sim(derms_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=derms_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        client.delete("/_sim/ack").raise_for_status()
        yield client


@pytest.fixture
def mailbox(smtp_server: SmtpSink) -> SmtpSink:
    smtp_server.clear()
    return smtp_server


@pytest.fixture(scope="session")
def callers() -> dict[str, Caller]:
    return {
        role: Caller(role=role, username=role, password_hash=cheap_hash(password))
        for role, password in PASSWORDS.items()
    }


@pytest.fixture(scope="session")
def default_lookups() -> Lookups:
    return load_lookups(LOOKUPS_DIR)


@dataclass
class HubUnderTest:
    hub: Hub
    client: httpx.AsyncClient
    settings: Settings
    #: The folder holding both file stores (ftp/, object-storage/) as local folders: the hub
    #: fixture's own, or where a hub built from default settings keeps them.
    file_stores: Path = Path("var/files")

    async def detail(self, instance_id: str) -> dict[str, Any]:
        """The instance as GET /ops/instances/{id} shows it to an operator."""
        found = await self.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        assert found.status_code == 200, found.text
        detail: dict[str, Any] = found.json()
        return detail

    async def found_by(self, key: str) -> list[dict[str, Any]]:
        """The instances an operator finds by a business identifier."""
        page = await self.client.get("/ops/instances", params={"key": key}, auth=OPERATOR_AUTH)
        items: list[dict[str, Any]] = page.json()["items"]
        return items


async def statuses(client: httpx.AsyncClient) -> list[str]:
    """The status of every instance an operator finds, newest first."""
    listed = await client.get("/ops/instances", auth=OPERATOR_AUTH)
    return [item["status"] for item in listed.json()["items"]]


def derms_received(derms_sim: httpx.Client, route: str) -> list[dict[str, Any]]:
    """The bodies the DERMS simulator received on `route`, in order."""
    bodies: list[dict[str, Any]] = derms_sim.get("/_sim/state/received").json().get(route, [])
    return bodies


def cpmcs_received(cpmcs_sim: httpx.Client, kind: str) -> list[dict[str, Any]]:
    """What the CPMCS simulator kept of `kind`: acknowledgements, device-statuses, sync-requests."""
    bodies: list[dict[str, Any]] = cpmcs_sim.get(f"/_sim/state/received/{kind}").json()
    return bodies


def hub_settings(
    database_url: str,
    cpmcs_url: str,
    derms_url: str,
    smtp: SmtpSink,
    callers: dict[str, Caller],
    segments: Segments | None = None,
    **limits: int,
) -> Settings:
    return Settings(
        database=Database(url=database_url),
        connections=Connections(
            cpmcs=Connection(base_url=cpmcs_url, timeouts=Timeouts(connect=2, read=3)),
            derms={"default": Connection(base_url=derms_url, timeouts=Timeouts(connect=2, read=3))},
        ),
        callers=callers,
        smtp=Smtp(host=smtp.host, port=smtp.port, timeout=5),
        limits=Limits(**limits),
        segments=segments or Segments(),
        lookups_dir=LOOKUPS_DIR,
    )


@pytest.fixture
async def hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[HubUnderTest]:
    """The hub on an empty database, talking to the simulators over loopback."""
    empty_tables(database_url)
    settings = hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers)
    file_stores = tmp_path / "file-stores"
    built = build_hub(settings, default_lookups, local_file_stores(file_stores))
    async with serving(built, file_stores) as under_test:
        yield under_test


@asynccontextmanager
async def hub_against(
    cpmcs_url: str,
    *,
    database_url: str,
    derms_url: str,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    lookups: Lookups,
) -> AsyncIterator[HubUnderTest]:
    """The hub on an empty database whose CPMCS connection goes to `cpmcs_url`."""
    empty_tables(database_url)
    settings = hub_settings(database_url, cpmcs_url, derms_url, mailbox, callers)
    async with serving(build_hub(settings, lookups)) as under_test:
        yield under_test


@asynccontextmanager
async def serving(
    built: Hub, file_stores: Path = Path("var/files"), *, raise_app_exceptions: bool = True
) -> AsyncIterator[HubUnderTest]:
    """A built hub behind its API, for as long as the block runs; closed after. Without
    `raise_app_exceptions` the client gets what uvicorn would send for an exception that
    escapes the app, instead of the exception."""
    transport = httpx.ASGITransport(
        app=create_app(built), raise_app_exceptions=raise_app_exceptions
    )
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hub.test", timeout=30
    ) as client:
        yield HubUnderTest(
            hub=built, client=client, settings=built.settings, file_stores=file_stores
        )
    await built.aclose()
