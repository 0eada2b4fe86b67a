"""The hub's database refusing writes is an outage: 503 with Retry-After, not ready, one
email, one count and one log line per outage; and the hub recovers by itself.

The faults are real: on SQLite, a full disk (the database on a small tmpfs, filled up);
on PostgreSQL, the database made read-only under the hub's open connections."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from derms_bridge.bootstrap import build_hub, local_file_stores
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from derms_bridge.store.database import migrate
from tests.conftest import (
    DERMS_AUTH,
    HubUnderTest,
    hub_settings,
    postgres_database,
    postgres_read_only,
    serving,
)
from tests.integration.api.test_metrics import scrape, value
from tests.payloads import enrollment_request


@contextmanager
def small_disk(folder: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at `folder`, unmounted after."""
    folder.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed arguments, a folder of the test's own
        ["/usr/bin/mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["/usr/bin/umount", "-l", str(folder)], check=False)  # noqa: S603


class Fault:
    """Makes the hub's database refuse writes, and take them again."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self._folder = folder

    def start(self) -> None:
        if self.url.startswith("sqlite"):
            database = self.url.removeprefix("sqlite:///")
            # An empty write-ahead log: the next write must grow it, and there is no room.
            with closing(sqlite3.connect(database)) as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            disk = os.statvfs(self._folder)
            free = disk.f_bavail * disk.f_frsize
            with (self._folder / "filler").open("wb") as filler:
                try:
                    filler.write(b"\0" * free)
                    filler.flush()
                except OSError:
                    pass
            return
        postgres_read_only(self.url, True)

    def end(self) -> None:
        if self.url.startswith("sqlite"):
            (self._folder / "filler").unlink(missing_ok=True)
            return
        postgres_read_only(self.url, False)


@pytest.fixture(params=["sqlite", "postgresql"])
async def outage_hub(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
) -> AsyncIterator[tuple[HubUnderTest, Fault]]:
    """A hub on a database of its own, and the fault that makes that database refuse writes."""
    if request.param == "postgresql":
        if os.environ.get("DERMS_BRIDGE_TEST_POSTGRES", "on").lower() == "off":
            pytest.skip("PostgreSQL left out on purpose (DERMS_BRIDGE_TEST_POSTGRES=off)")
        folder = tmp_path
        database = postgres_database("derms_bridge_outage")
    else:
        folder = tmp_path / "small-disk"
        database = sqlite_on_small_disk(folder)
    with database as url:
        settings = hub_settings(url, cpmcs_server.url, derms_server.url, mailbox, callers)
        built = build_hub(settings, default_lookups, local_file_stores(tmp_path / "stores"))
        fault = Fault(url, folder)
        try:
            async with serving(built) as under_test:
                yield under_test, fault
        finally:
            fault.end()


@contextmanager
def sqlite_on_small_disk(folder: Path) -> Iterator[str]:
    """A migrated SQLite database on a small tmpfs at `folder`; its URL."""
    with small_disk(folder):
        url = f"sqlite:///{folder / 'hub.db'}"
        migrate(url)
        yield url


def enrollment_batch(message_id: str) -> dict[str, object]:
    return {"drmsInstanceId": "DRMS-1", "enrollmentRequests": [enrollment_request(message_id)]}


async def test_a_database_that_refuses_writes_is_an_outage_the_hub_recovers_from(
    outage_hub: tuple[HubUnderTest, Fault],
    mailbox: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, fault = outage_hub
    sent = await hub.client.post(
        "/enroll-to-dacs", json=enrollment_batch("M-BEFORE"), auth=DERMS_AUTH
    )
    assert sent.status_code == 200, sent.text
    outages_before = value(await scrape(hub), "derms_bridge_database_outages_total")
    mailbox.clear()
    caplog.clear()

    fault.start()
    for attempt in range(5):
        refused = await hub.client.post(
            "/enroll-to-dacs", json=enrollment_batch(f"M-DURING-{attempt}"), auth=DERMS_AUTH
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "30"
        assert "send it again later" in refused.json()["detail"]
    not_ready = await hub.client.get("/readyz")
    assert not_ready.status_code == 503
    assert "refuses writes" in not_ready.json()["database"]

    assert value(await scrape(hub), "derms_bridge_database_outages_total") == outages_before + 1
    assert value(await scrape(hub), "derms_bridge_database_writable") == 0
    mails = await asyncio.to_thread(mailbox.wait_for, 1)
    assert len(mails) == 1
    assert "database outage" in mails[0].subject
    told = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(told) == 1, [r.getMessage() for r in told]
    assert "database outage" in told[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.WARNING)

    fault.end()
    ready = await hub.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert value(await scrape(hub), "derms_bridge_database_writable") == 1
    after = await hub.client.post(
        "/enroll-to-dacs", json=enrollment_batch("M-AFTER"), auth=DERMS_AUTH
    )
    assert after.status_code == 200, after.text
    assert await hub.found_by("M-AFTER")
    assert not await hub.found_by("M-DURING-0")
    assert len(mailbox.messages()) == 1
