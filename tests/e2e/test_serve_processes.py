"""`derms-bridge serve --processes N`: N hub processes answer on one port, against one
PostgreSQL, each running the flows it receives, and stop together at SIGTERM; SQLite is
refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import psycopg

from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH
from tests.e2e.test_file_faults import (
    Processes,
    _healthy,
    caller_hashes,
    postgres_url,
    processes,
    wait_for,
    write_settings,
)
from tests.e2e.test_sandbox_process import STARTUP_SECONDS, console_script
from tests.ports import ports_to_bind

__all__ = ["caller_hashes", "postgres_url", "processes"]

STAGES = 40
STOP_SECONDS = 60.0


def stage_status(n: int) -> dict[str, str]:
    return {
        "messageId": f"M-PROC-{n}",
        "eventId": f"EV-PROC-{n}",
        "stageId": "S-1",
        "programId": "BYOT",
        "eventType": "ECONOMIC",
        "stageStatus": "SCHEDULED",
        "startDateTimeISO": "2026-12-01T14:00:00.000Z",
        "endDateTimeISO": "2026-12-01T18:00:00.000Z",
    }


def test_several_processes_answer_on_one_port_on_postgresql(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=postgres_url,
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={},
    )
    port = ports_to_bind()
    hub = processes.start(
        "serve", "--config", str(settings), "--port", str(port), "--processes", "2"
    )
    wait_for(lambda: _healthy(port), STARTUP_SECONDS, "the hub did not answer", processes)
    url = f"http://{LOOPBACK}:{port}"

    # A connection each: the kernel spreads connections, not requests, over the processes.
    instance_ids = []
    for n in range(STAGES):
        with httpx.Client(base_url=url, auth=DERMS_AUTH, timeout=30) as client:
            reply = client.post("/stage-status-to-dacs", json=stage_status(n))
        assert reply.status_code == 200, reply.text
        assert reply.json()["MsgAck"]["ackType"] == "SUCCESS"
        instance_ids.append(reply.headers["X-Instance-Id"])
    serving = wait_for(
        lambda: found if len(found := serve_processes(url)) == 2 else None,
        STARTUP_SECONDS,
        "the two processes did not both show in /ops/processes",
        processes,
    )
    with psycopg.connect(postgres_url) as connection:
        runners = connection.execute(
            "SELECT runner, count(*) FROM instances WHERE id = ANY(%s) GROUP BY runner",
            (instance_ids,),
        ).fetchall()
    assert sum(count for _runner, count in runners) == STAGES
    assert {runner for runner, _count in runners} == {p["name"] for p in serving}, runners

    code, _seconds = hub.stop(STOP_SECONDS)
    assert code == 0, hub.describe()
    assert not _healthy(port)


def serve_processes(url: str) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = httpx.get(
        f"{url}/ops/processes", auth=OPERATOR_AUTH, timeout=10
    ).json()
    return [p for p in listed if p["command"] == "serve"]


def test_several_processes_need_postgresql(
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    tmp_path: Path,
) -> None:
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={},
    )
    done = subprocess.run(  # noqa: S603 - the project's own command
        [str(console_script()), "serve", "--config", str(settings), "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert done.returncode == 2
    assert "--processes needs PostgreSQL" in done.stderr
