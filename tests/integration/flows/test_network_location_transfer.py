"""Flows 15, 18 and 19 through the hub's HTTP API: DERMS's file kept as it came, passed on
unchanged to the store the preference names (a real folder standing in for each), and
the emails, against an SMTP sink on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import Hub, build_hub
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings import Segments, Settings
from derms_bridge.settings.connections import Caller
from derms_bridge.settings.file_storage import FileStorageSettings, LocalFolderSettings
from derms_bridge.store.staged_transfers import StagedTransferStore
from derms_bridge.store.tables import StagedChunkRow
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, empty_tables, hub_settings, statuses
from tests.multipart import CONTENT_TYPE, Part, multipart_body

ROUTE = "/network-model-to-dacs"
NAME = "SP Netz Übersicht 2026.csv"
CSV = (
    b"servicePointId,transformerId,feederId,substationId\r\n"
    b"SP-1001,TX-77,FD-12,SS-3\r\n"
    b"SP-1002,TX-77,FD-12,SS-3\r\n"
)


def message(message_id: str = "NM-1", file_name: str = NAME, **fields: Any) -> dict[str, Any]:
    return {"messageId": message_id, "fileName": file_name, "loadType": "INITIAL", **fields}


class TransferHub:
    """The hub with its stores in a test folder, and a transfer worker the test steps."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient, stores: Path) -> None:
        self.hub = hub
        self.client = client
        self.bucket = stores / "object-storage" / "cpmcs" / "sp-network-location"
        self.directory = stores / "ftp" / "inbound" / "sp-network-location"

    def make_folders(self) -> None:
        self.bucket.mkdir(parents=True)
        self.directory.mkdir(parents=True)

    def prefer(self, preference: str) -> None:
        lookups = self.hub.lookups.current
        config = lookups.tables["ConfigProps"]
        rows = {**config.rows, "dacs.file.target.transfer.pref": preference}
        self.hub.lookups.current = Lookups(
            {**lookups.tables, "ConfigProps": replace(config, rows=rows)}
        )

    async def send(
        self, sent: dict[str, Any] | str, content: bytes = CSV, *, auth: Any = DERMS_AUTH
    ) -> httpx.Response:
        text = sent if isinstance(sent, str) else json.dumps(sent)
        return await self.client.post(
            ROUTE,
            data={"message": text},
            files={"file": ("upload.csv", content, "text/csv")},
            auth=auth,
        )

    async def drain(self) -> None:
        while await self.hub.transfers.step():
            pass

    async def detail(self, instance_id: str) -> dict[str, Any]:
        found = await self.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        assert found.status_code == 200, found.text
        detail: dict[str, Any] = found.json()
        return detail

    async def instances(self) -> int:
        listed = await self.client.get("/ops/instances", auth=OPERATOR_AUTH)
        total: int = listed.json()["total"]
        return total

    async def staged_chunks(self) -> list[int]:
        """The size of each chunk the database keeps of received files."""
        async with self.hub.store.engine.connect() as connection:
            return list(await connection.scalars(select(func.length(StagedChunkRow.data))))


def transfer_settings(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    stores: Path,
    segments: Segments | None = None,
) -> Settings:
    settings = hub_settings(
        database_url, cpmcs_server.url, derms_server.url, mailbox, callers, segments=segments
    )
    local = FileStorageSettings(
        ftp=LocalFolderSettings(root=stores / "ftp"),
        object_storage=LocalFolderSettings(root=stores / "object-storage"),
    )
    return settings.model_copy(update={"file_stores": local})


@pytest.fixture
async def transfer_hub(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> AsyncIterator[TransferHub]:
    empty_tables(database_url)
    stores = tmp_path / "stores"
    settings = transfer_settings(database_url, cpmcs_server, derms_server, mailbox, callers, stores)
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built, run_workers=False))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hub.test", timeout=30
    ) as client:
        yield TransferHub(built, client, stores)
    await built.aclose()


async def test_os_preference_puts_the_file_unchanged_into_the_bucket(
    transfer_hub: TransferHub, mailbox: SmtpSink
) -> None:
    transfer_hub.make_folders()

    reply = await transfer_hub.send(message())

    assert reply.status_code == 202
    instance_id = reply.json()["instanceId"]
    assert reply.json() == {"instanceId": instance_id, "resumed": False}
    assert (await transfer_hub.detail(instance_id))["status"] == "in_progress"
    await transfer_hub.drain()

    assert (transfer_hub.bucket / NAME).read_bytes() == CSV
    assert list(transfer_hub.directory.iterdir()) == []
    detail = await transfer_hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["reply"]["bytes"] == len(CSV)
    [child_id] = detail["children"]
    child = await transfer_hub.detail(child_id)
    assert (child["flow"], child["status"], child["parent_id"]) == (
        "common_os_transfer",
        "succeeded",
        instance_id,
    )
    [write] = child["activities"]
    assert (write["target"], write["operation"], write["error"]) == (
        "object storage",
        "write",
        None,
    )
    assert write["path"] == f"cpmcs:sp-network-location/{NAME}"
    [mail] = mailbox.wait_for(1)
    assert mail.rcpt_tos == ("integration-ops@utility.example",)
    assert "complete: SUCCESS" in mail.subject
    assert f"{NAME} ({len(CSV)} bytes) transferred to object storage bucket" in mail.body_text
    assert await transfer_hub.staged_chunks() == []


async def test_ftp_preference_puts_the_file_into_the_directory(
    transfer_hub: TransferHub,
) -> None:
    transfer_hub.make_folders()
    transfer_hub.prefer("ftp")

    reply = await transfer_hub.send(message(file_name="naïve ñetwork.csv"))
    await transfer_hub.drain()

    assert (transfer_hub.directory / "naïve ñetwork.csv").read_bytes() == CSV
    assert list(transfer_hub.bucket.iterdir()) == []
    detail = await transfer_hub.detail(reply.json()["instanceId"])
    child = await transfer_hub.detail(detail["children"][0])
    assert child["flow"] == "common_ftp_transfer"
    assert child["activities"][0]["path"] == "/inbound/sp-network-location/naïve ñetwork.csv"
    found = await transfer_hub.client.get(
        "/ops/instances", params={"key": "naïve ñetwork.csv"}, auth=OPERATOR_AUTH
    )
    assert {item["flow"] for item in found.json()["items"]} == {
        "sp_network_location_transfer",
        "common_ftp_transfer",
    }


async def test_an_unknown_preference_fails_with_both_emails(
    transfer_hub: TransferHub, mailbox: SmtpSink
) -> None:
    transfer_hub.make_folders()
    transfer_hub.prefer("sftp")

    reply = await transfer_hub.send(message())
    await transfer_hub.drain()

    detail = await transfer_hub.detail(reply.json()["instanceId"])
    assert detail["status"] == "failed"
    assert "dacs.file.target.transfer.pref is 'sftp'" in detail["error"]
    assert detail["children"] == []
    subjects = [mail.subject for mail in mailbox.wait_for(2)]
    assert sum("complete: ERROR" in subject for subject in subjects) == 1
    assert sum(") error: " in subject for subject in subjects) == 1


async def test_a_missing_folder_fails_then_a_resubmit_after_the_fix_completes_it(
    transfer_hub: TransferHub, mailbox: SmtpSink
) -> None:
    reply = await transfer_hub.send(message())
    await transfer_hub.drain()

    instance_id = reply.json()["instanceId"]
    detail = await transfer_hub.detail(instance_id)
    assert detail["status"] == "failed"
    assert detail["error"].startswith(f"{NAME} not transferred: local folder ")
    assert "folder 'sp-network-location' does not exist" in detail["error"]
    [child_id] = detail["children"]
    child = await transfer_hub.detail(child_id)
    assert child["status"] == "failed"
    assert "does not exist" in child["activities"][0]["error"]
    mails = mailbox.wait_for(2)
    assert {mail.rcpt_tos for mail in mails} == {
        ("integration-ops@utility.example",),
        ("integration-errors@utility.example",),
    }
    assert any("complete: ERROR" in mail.subject for mail in mails)
    assert all("does not exist" in mail.body_text for mail in mails)
    mailbox.clear()
    transfer_hub.make_folders()

    resubmitted = await transfer_hub.client.post(
        f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH
    )
    assert resubmitted.status_code == 200
    assert resubmitted.json()["status"] == "in_progress"
    await transfer_hub.drain()

    assert (transfer_hub.bucket / NAME).read_bytes() == CSV
    detail = await transfer_hub.detail(instance_id)
    assert (detail["status"], detail["error"], detail["attempts"]) == ("succeeded", None, 2)
    assert len(detail["children"]) == 2
    [mail] = mailbox.wait_for(1)
    assert "complete: SUCCESS" in mail.subject
    again = await transfer_hub.client.post(
        f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH
    )
    assert again.status_code == 409


async def test_a_resend_resumes_a_failed_transfer_and_never_repeats_a_done_one(
    transfer_hub: TransferHub,
) -> None:
    first = await transfer_hub.send(message("NM-7"))
    await transfer_hub.drain()
    instance_id = first.json()["instanceId"]
    transfer_hub.make_folders()

    resent = await transfer_hub.send(message("NM-7"))
    await transfer_hub.drain()

    assert resent.status_code == 202
    assert resent.json() == {"instanceId": instance_id, "resumed": True}
    assert (transfer_hub.bucket / NAME).read_bytes() == CSV
    assert (await transfer_hub.detail(instance_id))["status"] == "succeeded"

    once_more = await transfer_hub.send(message("NM-7"))
    await transfer_hub.drain()

    assert once_more.json() == {"instanceId": instance_id, "resumed": False}
    assert len((await transfer_hub.detail(instance_id))["children"]) == 2
    assert await transfer_hub.instances() == 3


async def test_a_file_sent_before_its_message_is_passed_on_unchanged(
    transfer_hub: TransferHub,
) -> None:
    transfer_hub.make_folders()
    body = multipart_body(
        Part("file", CSV, "upload.csv"), Part("message", json.dumps(message()).encode())
    )

    reply = await transfer_hub.client.post(
        ROUTE, content=body, headers={"Content-Type": CONTENT_TYPE}, auth=DERMS_AUTH
    )
    await transfer_hub.drain()

    assert reply.status_code == 202
    assert (transfer_hub.bucket / NAME).read_bytes() == CSV


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        (message(messageId=""), "message.messageId"),
        (message(loadType="FULL"), "message.loadType"),
        ({"messageId": "NM-1", "loadType": "INITIAL"}, "message.fileName"),
        (message(file_name="../../etc/cron.d/x"), "message.fileName"),
        (message(file_name="sub/dir.csv"), "message.fileName"),
        (message(file_name="line\nbreak.csv"), "message.fileName"),
        ("{not json", "message"),
    ],
)
async def test_a_bad_message_is_a_422_naming_the_field_and_keeps_only_the_rejected_message(
    transfer_hub: TransferHub, sent: dict[str, Any] | str, field: str
) -> None:
    transfer_hub.make_folders()

    reply = await transfer_hub.send(sent)

    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in reply.json()["errors"]]
    assert await statuses(transfer_hub.client) == ["rejected"]
    assert await transfer_hub.staged_chunks() == []
    assert list(transfer_hub.bucket.iterdir()) == []


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ({"files": {"file": ("a.csv", CSV)}}, "message"),
        ({"data": {"message": json.dumps(message())}}, "file"),
        ({"data": {"message": json.dumps(message())}, "files": {"file": ("a.csv", b"")}}, "file"),
    ],
)
async def test_a_missing_or_empty_part_is_a_422_naming_it(
    transfer_hub: TransferHub, parts: dict[str, Any], field: str
) -> None:
    # An httpx request with data alone is form-urlencoded; a dummy part keeps it multipart.
    files = parts.get("files") or {"other": ("x.txt", b"x")}

    reply = await transfer_hub.client.post(
        ROUTE, data=parts.get("data"), files=files, auth=DERMS_AUTH
    )

    assert reply.status_code == 422
    assert field in [error["field"] for error in reply.json()["errors"]]
    assert await statuses(transfer_hub.client) == ["rejected"]


async def test_only_derms_may_send_and_only_multipart(transfer_hub: TransferHub) -> None:
    assert (await transfer_hub.send(message(), auth=OPERATOR_AUTH)).status_code == 401
    as_json = await transfer_hub.client.post(ROUTE, json=message(), auth=DERMS_AUTH)
    assert as_json.status_code == 415
    # The stranger's request is not kept; the caller's refused one is, as rejected.
    assert await statuses(transfer_hub.client) == ["rejected"]


async def test_a_file_over_the_limit_is_a_413_and_keeps_only_the_rejected_message(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> None:
    empty_tables(database_url)
    settings = transfer_settings(
        database_url,
        cpmcs_server,
        derms_server,
        mailbox,
        callers,
        tmp_path,
        segments=Segments(max_file_bytes=4096),
    )
    built = build_hub(settings, default_lookups)
    transport = httpx.ASGITransport(app=create_app(built, run_workers=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        limited = TransferHub(built, client, tmp_path)

        declared = await limited.send(message(), b"x" * 8000)
        # Streamed without a Content-Length, the limit is met while the file is kept.
        parts = httpx.Request(
            "POST",
            "http://hub.test" + ROUTE,
            data={"message": json.dumps(message())},
            files={"file": ("big.csv", b"y" * 3000 + b"z" * 3000)},
        )
        body = parts.read()

        async def chunked() -> AsyncIterator[bytes]:
            yield body

        streamed = await client.post(
            ROUTE,
            content=chunked(),
            headers={"Content-Type": parts.headers["Content-Type"]},
            auth=DERMS_AUTH,
        )

        assert declared.status_code == 413
        assert streamed.status_code == 413
        assert "limit of 4096 bytes" in streamed.json()["detail"]
        assert await statuses(limited.client) == ["rejected", "rejected"]
        assert await limited.staged_chunks() == []
    await built.aclose()


async def test_a_large_file_is_kept_and_passed_on_in_chunks(
    transfer_hub: TransferHub,
) -> None:
    transfer_hub.make_folders()
    content = os.urandom(6 * 1024 * 1024 + 123)

    reply = await transfer_hub.send(message(file_name="large network model.csv"), content)

    assert reply.status_code == 202
    assert await transfer_hub.staged_chunks() == [1024 * 1024] * 6 + [123]
    tracemalloc.start()
    try:
        await transfer_hub.drain()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The file went a chunk at a time: never near its whole size in memory at once.
    assert peak < len(content) / 2
    assert (transfer_hub.bucket / "large network model.csv").read_bytes() == content
    assert await transfer_hub.staged_chunks() == []


async def test_a_transfer_survives_a_restart_and_a_dead_worker(
    transfer_hub: TransferHub,
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> None:
    transfer_hub.make_folders()
    queued = await transfer_hub.send(message("NM-Q"))
    claimed = await transfer_hub.send(message("NM-D", file_name="claimed.csv"))
    # A worker claims the second transfer and dies: its lease runs out.
    dead = await StagedTransferStore(transfer_hub.hub.store).claim(
        "dead worker", timedelta(seconds=-1)
    )
    assert dead is not None
    await transfer_hub.hub.aclose()

    settings = transfer_settings(
        database_url, cpmcs_server, derms_server, mailbox, callers, tmp_path / "stores"
    )
    restarted = build_hub(settings, default_lookups)
    try:
        while await restarted.transfers.step():
            pass
        for reply in (queued, claimed):
            detail = await restarted.store.get(reply.json()["instanceId"])
            assert detail is not None
            assert detail.status == "succeeded"
    finally:
        await restarted.aclose()
    assert (transfer_hub.bucket / NAME).read_bytes() == CSV
    assert (transfer_hub.bucket / "claimed.csv").read_bytes() == CSV


async def test_a_slow_upload_holds_up_no_other(transfer_hub: TransferHub) -> None:
    slow_body = multipart_body(
        Part("message", json.dumps(message("NM-SLOW")).encode()),
        Part("file", os.urandom(3 * 1024 * 1024), "slow.csv"),
    )
    half = len(slow_body) // 2
    rest_may_come = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield slow_body[:half]
        await rest_may_come.wait()
        yield slow_body[half:]

    slow = asyncio.create_task(
        transfer_hub.client.post(
            ROUTE, content=slowly(), headers={"Content-Type": CONTENT_TYPE}, auth=DERMS_AUTH
        )
    )
    try:
        # Bounded so that a hub that keeps the quick file waiting fails here, not hangs.
        quick = await asyncio.wait_for(transfer_hub.send(message("NM-QUICK")), timeout=30)
    finally:
        rest_may_come.set()

    assert quick.status_code == 202
    assert (await slow).status_code == 202
    assert await transfer_hub.instances() == 2
