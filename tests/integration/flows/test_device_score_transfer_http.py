"""Flows 16 and 17 through the hub: started with POST /ops/schedules/{flow}/run, files from
real local folders to the DERMS simulator, emails to the SMTP sink."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import httpx

from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import OPERATOR_AUTH, HubUnderTest, derms_received
from tests.stores import DERMS_DOWN

FTP_FOLDER = ("ftp", "outbound", "device-score")
BUCKET = ("object-storage", "cpmcs", "device-score")


def folder(hub: HubUnderTest, parts: tuple[str, ...] = FTP_FOLDER) -> Path:
    path = hub.file_stores.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run(hub: HubUnderTest, flow: str = "device_score_ftp") -> dict[str, Any]:
    """Start the flow as an operator would, wait for it, and read its instance."""
    started = await hub.client.post(f"/ops/schedules/{flow}/run", auth=OPERATOR_AUTH)
    assert started.status_code == 202, started.text
    instance_id = started.json()["instanceId"]
    await hub.hub.scheduler.finished(instance_id)
    return await hub.detail(instance_id)


def received(derms_sim: httpx.Client) -> list[dict[str, Any]]:
    return derms_received(derms_sim, "/device-score")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_files_go_to_derms_and_are_renamed_sent(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    files = folder(hub)
    first, second = b"deviceId,score\nD-1,87\n", b"deviceId,score\n" + b"D-2,55\n" * 400_000
    (files / "SDCSE_20261126_1.csv").write_bytes(first)
    (files / "SDCSE_20261126_2.csv").write_bytes(second)
    (files / "README.txt").write_text("not a device score file")

    instance = await run(hub)

    assert instance["status"] == "succeeded"
    assert received(derms_sim) == [
        {
            "fileName": "SDCSE_20261126_1.csv",
            "contentType": "application/octet-stream",
            "size": len(first),
            "sha256": sha256(first),
        },
        {
            "fileName": "SDCSE_20261126_2.csv",
            "contentType": "application/octet-stream",
            "size": len(second),
            "sha256": sha256(second),
        },
    ]
    assert sorted(p.name for p in files.iterdir()) == [
        "README.txt",
        "Sent-SDCSE_20261126_1.csv",
        "Sent-SDCSE_20261126_2.csv",
    ]
    assert [(a["target"], a["operation"], a["http_status"]) for a in instance["activities"]] == [
        ("ftp", "list", None),
        ("ftp", "read", None),
        ("DERMS default", "deviceScore", 202),
        ("ftp", "rename", None),
        ("ftp", "read", None),
        ("DERMS default", "deviceScore", 202),
        ("ftp", "rename", None),
    ]
    assert instance["reply"]["sent"] == ["SDCSE_20261126_1.csv", "SDCSE_20261126_2.csv"]
    assert [i["id"] for i in await hub.found_by("SDCSE_20261126_2.csv")] == [instance["id"]]
    [mail] = mailbox.wait_for(1)
    assert mail.subject == "[derms-bridge] Device Score FTP Transfer complete: 2 sent, 0 not sent"
    assert "Files sent to DERMS (2):\n  SDCSE_20261126_1.csv\n  SDCSE_20261126_2.csv" in (
        mail.body_text
    )


async def test_a_file_derms_refuses_is_renamed_error_and_the_next_one_goes(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    files = folder(hub)
    for n in (1, 2, 3):
        (files / f"SDCSE_{n}.csv").write_text(f"file {n}")
    derms_sim.put("/_sim/faults", json={"fail_calls": [2]}).raise_for_status()

    instance = await run(hub)

    assert instance["status"] == "failed"
    assert instance["error"] == (
        f"2 sent, 1 not sent from /outbound/device-score on local folder {hub.file_stores}/ftp"
    )
    assert sorted(p.name for p in files.iterdir()) == [
        "Error-SDCSE_2.csv",
        "Sent-SDCSE_1.csv",
        "Sent-SDCSE_3.csv",
    ]
    assert [r["fileName"] for r in received(derms_sim)] == ["SDCSE_1.csv", "SDCSE_3.csv"]
    mails = {mail.subject: mail for mail in mailbox.wait_for(2)}
    error_mail = next(m for s, m in mails.items() if " error: " in s)
    assert error_mail.rcpt_tos == ("integration-errors@utility.example",)
    assert "device score file 'SDCSE_2.csv' not sent: DERMS answered HTTP 500" in (
        error_mail.body_text
    )
    summary = mails["[derms-bridge] Device Score FTP Transfer complete: 2 sent, 1 not sent"]
    assert "Files not sent (1):\n  SDCSE_2.csv: DERMS answered HTTP 500 to deviceScore" in (
        summary.body_text
    )


async def test_derms_down_leaves_no_file_renamed_sent(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink
) -> None:
    files = folder(hub)
    (files / "SDCSE_1.csv").write_text("one")
    (files / "SDCSE_2.csv").write_text("two")
    derms_sim.put("/_sim/faults", json={"down": True}).raise_for_status()

    instance = await run(hub)

    assert instance["status"] == "failed"
    assert sorted(p.name for p in files.iterdir()) == ["Error-SDCSE_1.csv", "Error-SDCSE_2.csv"]
    assert received(derms_sim) == []
    reasons = [m["reason"] for m in instance["reply"]["notSent"]]
    assert len(reasons) == 2
    assert all(r.startswith(DERMS_DOWN) for r in reasons)
    mailbox.wait_for(3)


async def test_no_file_sends_the_no_file_email_when_its_flag_is_true(
    hub: HubUnderTest, derms_sim: httpx.Client, mailbox: SmtpSink, default_lookups: Lookups
) -> None:
    folder(hub)
    props = default_lookups.tables["ConfigProps"]
    rows = {**props.rows, "notification.email.process.nofile.flag": "true"}
    hub.hub.lookups.current = Lookups(
        tables={**default_lookups.tables, "ConfigProps": dataclasses.replace(props, rows=rows)}
    )

    instance = await run(hub)

    assert instance["status"] == "skipped"
    [mail] = mailbox.wait_for(1)
    assert mail.subject == "[derms-bridge] Device Score FTP Transfer: no file found"
    assert mail.rcpt_tos == ("integration-ops@utility.example",)
    assert "no file beginning with 'SDCSE' in /outbound/device-score" in mail.body_text
    assert received(derms_sim) == []


async def test_names_with_spaces_and_accents_reach_derms_as_they_are(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    files = folder(hub)
    (files / "SDCSE relevé Łódź #1 100%.csv").write_text("scores")

    instance = await run(hub)

    assert instance["status"] == "succeeded", instance["error"]
    assert [r["fileName"] for r in received(derms_sim)] == ["SDCSE relevé Łódź #1 100%.csv"]
    assert [p.name for p in files.iterdir()] == ["Sent-SDCSE relevé Łódź #1 100%.csv"]


async def test_a_file_sent_once_is_never_picked_up_again(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    files = folder(hub)
    (files / "SDCSE_1.csv").write_text("once")

    first = await run(hub)
    second = await run(hub)

    assert (first["status"], second["status"]) == ("succeeded", "skipped")
    assert [r["fileName"] for r in received(derms_sim)] == ["SDCSE_1.csv"]
    assert [p.name for p in files.iterdir()] == ["Sent-SDCSE_1.csv"]


async def test_flow_17_sends_the_files_of_the_bucket(
    hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    bucket = folder(hub, BUCKET)
    (bucket / "SDCSE_os.csv").write_text("from the bucket")

    instance = await run(hub, "device_score_os")

    assert instance["status"] == "succeeded"
    assert instance["flow_identifier"] == "OUTL-BA-DRMS_DACS_SEND_DVCSCOREC"
    assert [r["fileName"] for r in received(derms_sim)] == ["SDCSE_os.csv"]
    assert instance["activities"][0]["target"] == "object storage"
    assert [p.name for p in bucket.iterdir()] == ["Sent-SDCSE_os.csv"]
