"""Schedules with real `derms-bridge` processes: `run <flow>` from the command line, and two
worker processes sharing one PostgreSQL that run each tick once between them.

The processes run in a folder of the test's own, where the local file stores live
(var/files/...), against the session's simulators and SMTP sink.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import (
    LOOKUPS_DIR,
    OPERATOR_AUTH,
    PASSWORDS,
    HubUnderTest,
    cheap_hash,
    derms_received,
)
from tests.e2e.test_sandbox_process import STARTUP_SECONDS, console_script

FOLDER = ("var", "files", "ftp", "outbound", "device-score")


def write_settings(
    workdir: Path,
    database_url: str,
    derms: ServerThread,
    cpmcs: ServerThread,
    mailbox: SmtpSink,
    schedules: dict[str, Any] | None = None,
    processes: dict[str, float] | None = None,
) -> Path:
    settings = {
        "database": {"url": database_url},
        "connections": {
            "cpmcs": {"base_url": cpmcs.url},
            "derms": {"default": {"base_url": derms.url, "timeouts": {"connect": 2, "read": 5}}},
        },
        "callers": {
            "operator": {
                "role": "operator",
                "username": "operator",
                "password_hash": cheap_hash(PASSWORDS["operator"]),
            }
        },
        "smtp": {"host": mailbox.host, "port": mailbox.port, "timeout": 5},
        "schedules": schedules or {},
        "lookups_dir": str(LOOKUPS_DIR),
        **({"processes": processes} if processes else {}),
    }
    path = workdir / "derms-bridge.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}


def derms_bridge(workdir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [str(console_script()), *arguments],
        cwd=workdir,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def workdir(
    tmp_path: Path,
    hub: HubUnderTest,
    derms_server: ServerThread,
    cpmcs_server: ServerThread,
    mailbox: SmtpSink,
) -> Path:
    """A folder with the hub's settings (on the test's database) and an FTP folder."""
    tmp_path.joinpath(*FOLDER).mkdir(parents=True)
    write_settings(
        tmp_path, hub.settings.database.url.get_secret_value(), derms_server, cpmcs_server, mailbox
    )
    return tmp_path


async def test_run_sends_the_files_now_and_shows_each_step(
    workdir: Path, hub: HubUnderTest, derms_sim: httpx.Client
) -> None:
    workdir.joinpath(*FOLDER, "SDCSE_cli.csv").write_text("deviceId,score\nD-1,42\n")

    ran = derms_bridge(workdir, "run", "device_score_ftp", "--config", "derms-bridge.yaml")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "ok DERMS default deviceScore /device-score/SDCSE_cli.csv HTTP 202" in ran.stdout
    assert "ok ftp rename /outbound/device-score/SDCSE_cli.csv -> Sent-SDCSE_cli.csv" in (
        ran.stdout
    )
    assert "succeeded" in ran.stdout
    assert [r["fileName"] for r in derms_received(derms_sim, "/device-score")] == ["SDCSE_cli.csv"]
    [instance] = await hub.found_by("SDCSE_cli.csv")
    assert (instance["flow"], instance["caller"]) == ("device_score_ftp", "cli")


async def test_run_exits_1_when_the_run_failed(workdir: Path, derms_sim: httpx.Client) -> None:
    workdir.joinpath(*FOLDER, "SDCSE_refused.csv").write_text("x")
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    ran = derms_bridge(workdir, "run", "device_score_ftp", "--config", "derms-bridge.yaml")
    derms_sim.delete("/_sim/faults").raise_for_status()

    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "x DERMS default deviceScore /device-score/SDCSE_refused.csv HTTP 500" in ran.stdout
    assert "failed 0 sent, 1 not sent" in ran.stdout
    assert [p.name for p in workdir.joinpath(*FOLDER).iterdir()] == ["Error-SDCSE_refused.csv"]


def run_killed_midway(workdir: Path, derms_sim: httpx.Client) -> tuple[str, int]:
    """`derms-bridge run device_score_ftp` killed while DERMS holds its upload: the run's
    instance id and the killed process's pid."""
    derms_sim.put("/_sim/faults", json={"latency_ms": 4000}).raise_for_status()
    try:
        running = subprocess.Popen(  # noqa: S603
            [str(console_script()), "run", "device_score_ftp", "--config", "derms-bridge.yaml"],
            cwd=workdir,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert running.stdout is not None
        started = running.stdout.readline()
        assert started.startswith("device_score_ftp: instance "), started
        time.sleep(0.5)
        running.kill()
        running.wait(timeout=10)
    finally:
        derms_sim.delete("/_sim/faults").raise_for_status()
    return started.split()[-1], running.pid


def worker_process(workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603
        [str(console_script()), "worker", "--config", "derms-bridge.yaml"],
        cwd=workdir,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_run_whose_process_is_killed_is_failed_by_another_and_can_run_again(
    tmp_path: Path,
    hub: HubUnderTest,
    derms_server: ServerThread,
    cpmcs_server: ServerThread,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    tmp_path.joinpath(*FOLDER).mkdir(parents=True)
    tmp_path.joinpath(*FOLDER, "SDCSE_killed.csv").write_text("deviceId,score\nD-1,42\n")
    write_settings(
        tmp_path,
        hub.settings.database.url.get_secret_value(),
        derms_server,
        cpmcs_server,
        mailbox,
        processes={"heartbeat_seconds": 0.2, "stopped_after_seconds": 1.0},
    )
    instance_id, killed_pid = run_killed_midway(tmp_path, derms_sim)
    assert (await hub.detail(instance_id))["status"] == "in_progress"

    watching = worker_process(tmp_path)
    try:
        # The worker's start-up, then its heartbeats until the killed process counts as stopped.
        deadline = time.monotonic() + STARTUP_SECONDS
        while (detail := await hub.detail(instance_id))["status"] == "in_progress":
            assert time.monotonic() < deadline, "the killed run was never given up"
            await asyncio.sleep(0.2)
    finally:
        watching.terminate()
        watching.wait(timeout=10)

    assert detail["status"] == "failed"
    assert f":{killed_pid}:" in detail["error"]
    assert "stopped before the run ended" in detail["error"]
    [mail] = mailbox.wait_for(1)
    assert instance_id in mail.body_text
    schedules = await hub.client.get("/ops/schedules", auth=OPERATOR_AUTH)
    [device_score_ftp] = [s for s in schedules.json() if s["flow"] == "device_score_ftp"]
    assert device_score_ftp["last_run"]["status"] == "failed"
    assert device_score_ftp["running"] is False
    # Given up, the schedule is free: the file, never renamed, goes with the next run.
    again = derms_bridge(tmp_path, "run", "device_score_ftp", "--config", "derms-bridge.yaml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [p.name for p in tmp_path.joinpath(*FOLDER).iterdir()] == ["Sent-SDCSE_killed.csv"]


def test_run_exits_2_for_a_flow_that_is_not_scheduled(workdir: Path) -> None:
    ran = derms_bridge(workdir, "run", "enrollment_sync", "--config", "derms-bridge.yaml")

    assert ran.returncode == 2
    assert "no scheduled flow is called 'enrollment_sync'" in ran.stderr


def test_two_hub_processes_on_postgresql_run_each_tick_once(
    tmp_path: Path,
    database_url: str,
    hub: HubUnderTest,
    derms_server: ServerThread,
    cpmcs_server: ServerThread,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several hub processes share a database only on PostgreSQL")
    tmp_path.joinpath(*FOLDER).mkdir(parents=True)
    tmp_path.joinpath(*FOLDER, "SDCSE_once.csv").write_text("sent by one process, once")
    write_settings(
        tmp_path,
        database_url,
        derms_server,
        cpmcs_server,
        mailbox,
        {"device_score_ftp": {"cron": "*/2 * * * * *", "timezone": "Europe/Paris"}},
    )
    workers = [worker_process(tmp_path) for _ in range(2)]
    try:
        with psycopg.connect(database_url) as db:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                claimed = db.execute("SELECT count(*) FROM schedule_ticks").fetchone()
                db.commit()
                if claimed is not None and claimed[0] >= 4:
                    break
                time.sleep(0.2)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=10)
    with psycopg.connect(database_url) as db:
        ticks = db.execute("SELECT tick, owner, instance_id FROM schedule_ticks").fetchall()
        runs = db.execute(
            "SELECT value, count(*) FROM business_keys WHERE kind = 'scheduleTick' GROUP BY value"
        ).fetchall()
    assert len(ticks) >= 4, ticks
    assert len({tick for tick, _, _ in ticks}) == len(ticks)
    assert all(count == 1 for _, count in runs), runs
    assert len(runs) == sum(1 for _, _, instance in ticks if instance is not None)
    assert [r["fileName"] for r in derms_received(derms_sim, "/device-score")] == ["SDCSE_once.csv"]
    assert [p.name for p in tmp_path.joinpath(*FOLDER).iterdir()] == ["Sent-SDCSE_once.csv"]
