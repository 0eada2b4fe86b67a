"""The file flows' faults with real hub processes: killed mid-file, stopped mid-file
(SIGTERM), a segment CPMCS refuses, two worker processes sharing one file on PostgreSQL,
and an acknowledgement slower than the job's lease.

Each hub here is `derms-bridge serve` (or `derms-bridge worker`) started from a settings
file, talking to the session's simulators over loopback; nothing is mocked.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import yaml

from derms_bridge.sandbox.cpmcs_sim import RESERVE_DEVICE_PATH
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import (
    DERMS_AUTH,
    LOOKUPS_DIR,
    OPERATOR_AUTH,
    PASSWORDS,
    POSTGRES_ADMIN_URL,
    cheap_hash,
)
from tests.csv_files import write_reservation_csv
from tests.e2e.test_sandbox_process import ROOT, STARTUP_SECONDS, Output, console_script
from tests.multipart import CONTENT_TYPE, Part, multipart_body
from tests.ports import ports_to_bind

RESERVATION = "/device-reservation-to-dacs"
RESERVATION_ACK = "/device-reservation-ack"
FINISH_SECONDS = 60.0
#: processes.stop_grace_seconds in the stop tests: longer than CPMCS takes over a segment.
STOP_GRACE_SECONDS = 4.0
#: What a loaded machine may add to a stop: the last writes, the interpreter's exit.
STOP_MARGIN_SECONDS = 6.0
#: segments.lease_seconds in the stop tests, far longer than they run: a segment that
#: waited for its lease to run out would show.
LONG_LEASE_SECONDS = 120
#: segments.lease_seconds in the tests of work slower than its lease: renewed every third of
#: it, so a process may stall for two thirds of it (a loaded machine) before the lease runs
#: out, while the work it renews takes half as long again.
SHORT_LEASE_SECONDS = 3
SLOWER_THAN_THE_LEASE_MS = 4500
#: The read timeout in those tests: the slow answers must still come in time.
SLOW_READ_SECONDS = 15
#: Names the extra worker's PostgreSQL sessions (libpq reads PGAPPNAME), so that the test
#: can see when it has started polling for work.
WORKER_APP_NAME = "derms-bridge-file-faults-worker"

T = TypeVar("T")


@dataclass
class HubProcess:
    """One `derms-bridge` process, its output read in threads so that the pipes never fill."""

    command: list[str]
    process: subprocess.Popen[str]
    stdout: Output = field(default_factory=Output)
    stderr: Output = field(default_factory=Output)
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> str:
        return (
            f"{' '.join(self.command)} (pid {self.pid}, exit {self.process.poll()})\n"
            f"stdout:\n{self.stdout.text}\nstderr:\n{self.stderr.text[-4000:]}"
        )

    def stop(self, seconds: float) -> tuple[int, float]:
        """SIGTERM, as a service manager stops it: (exit code, seconds it took to exit);
        fails the test if it still runs after `seconds`."""
        signalled = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {seconds} s after SIGTERM\n{self.describe()}")
        for reader in self.readers:
            reader.join(timeout=5)
        return code, time.monotonic() - signalled

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as when a machine loses power."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for reader in self.readers:
            reader.join(timeout=5)


class Processes:
    """Starts hub processes and kills every one of them when the test ends."""

    def __init__(self) -> None:
        self.started: list[HubProcess] = []

    def start(self, *arguments: str, env: dict[str, str] | None = None) -> HubProcess:
        command = [str(console_script()), *arguments]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}
        environment.update(env or {})
        process = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        started = HubProcess(command=command, process=process)
        started.readers = [
            started.stdout.follow(process.stdout),
            started.stderr.follow(process.stderr),
        ]
        self.started.append(started)
        return started

    def describe(self) -> str:
        return "\n\n".join(process.describe() for process in self.started)

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture(autouse=True)
def faults_cleared(cpmcs_sim: httpx.Client, derms_sim: httpx.Client) -> Iterator[None]:
    """The session's simulators go back to answering at once, for the tests after these."""
    yield
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    derms_sim.delete("/_sim/faults").raise_for_status()


@pytest.fixture(scope="module")
def caller_hashes() -> dict[str, str]:
    return {role: cheap_hash(PASSWORDS[role]) for role in ("derms", "operator")}


def write_settings(
    path: Path,
    *,
    database_url: str,
    cpmcs: ServerThread,
    derms: ServerThread,
    mailbox: SmtpSink,
    hashes: dict[str, str],
    segments: dict[str, Any],
    processes: dict[str, float] | None = None,
    read_seconds: float = 5,
) -> Path:
    timeouts = {"connect": 2, "read": read_seconds}
    settings: dict[str, Any] = {
        "database": {"url": database_url},
        "connections": {
            "cpmcs": {"base_url": cpmcs.url, "timeouts": timeouts},
            "derms": {"default": {"base_url": derms.url, "timeouts": timeouts}},
        },
        "callers": {
            role: {"role": role, "username": role, "password_hash": hashed}
            for role, hashed in hashes.items()
        },
        "smtp": {"host": mailbox.host, "port": mailbox.port, "timeout": 5},
        "segments": {"ack_attempts": 2, **segments},
        "lookups_dir": str(LOOKUPS_DIR),
        # The test's own, so that its counters start at nothing.
        "metrics": {"dir": str(path.parent / "metrics")},
    }
    if processes is not None:
        settings["processes"] = processes
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def serve(processes: Processes, settings: Path, port: int) -> HubProcess:
    hub = processes.start(
        "serve", "--config", str(settings), "--port", str(port), "--log-level", "warning"
    )
    wait_for(
        lambda: _healthy(port),
        STARTUP_SECONDS,
        f"the hub did not answer /healthz on port {port}",
        processes,
        watch=hub,
    )
    return hub


def start_worker(processes: Processes, settings: Path, postgres_url: str) -> HubProcess:
    """A `derms-bridge worker` process, once it is looking for work in the database."""
    worker = processes.start(
        "worker",
        "--config",
        str(settings),
        "--log-level",
        "warning",
        env={"PGAPPNAME": WORKER_APP_NAME},
    )
    wait_for(
        lambda: sessions_named(postgres_url, WORKER_APP_NAME) > 0,
        STARTUP_SECONDS,
        "the worker process did not look for work",
        processes,
        watch=worker,
    )
    return worker


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://{LOOPBACK}:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(
    check: Callable[[], T | None],
    seconds: float,
    what: str,
    processes: Processes,
    *,
    watch: HubProcess | None = None,
    interval: float = 0.05,
) -> T:
    """Polls `check` until it answers something truthy; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if watch is not None and watch.process.poll() is not None:
            pytest.fail(f"{what}: the process exited\n{processes.describe()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s\n{processes.describe()}")
        time.sleep(interval)


def reservation(message_id: str) -> dict[str, Any]:
    return {
        "drmsInstanceId": "DRMS-7",
        "messageId": message_id,
        "eventId": "EV-1",
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }


def send_file(port: int, message: dict[str, Any], csv_file: Path) -> dict[str, Any]:
    reply = httpx.post(
        f"http://{LOOPBACK}:{port}{RESERVATION}",
        data={"message": json.dumps(message)},
        files={"file": ("devices.csv", csv_file.read_bytes(), "text/csv")},
        auth=DERMS_AUTH,
        timeout=30,
    )
    assert reply.status_code == 202, reply.text
    received: dict[str, Any] = reply.json()
    return received


def acks(derms_sim: httpx.Client) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = (
        derms_sim.get("/_sim/state/received").json().get(RESERVATION_ACK, [])
    )
    return received


def ack_types(derms_sim: httpx.Client) -> list[str]:
    return [ack["MsgAck"]["ackType"] for ack in acks(derms_sim)]


def ack_value(ack: dict[str, Any]) -> str:
    [response] = ack["MsgAck"]["responses"]["response"]
    value: str = response["value"]
    return value


def reserved(cpmcs_sim: httpx.Client) -> dict[str, Any]:
    summary: dict[str, Any] = cpmcs_sim.get("/_sim/state/reservations/summary").json()
    return summary


def reserve_calls(cpmcs_sim: httpx.Client) -> int:
    """reserveDevice calls that reached CPMCS, counted as they arrive (before any latency)."""
    calls: dict[str, int] = cpmcs_sim.get("/_sim/state/calls").json()
    return calls.get(RESERVE_DEVICE_PATH, 0)


def instance(port: int, instance_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"http://{LOOPBACK}:{port}/ops/instances/{instance_id}", auth=OPERATOR_AUTH, timeout=10
    )
    assert found.status_code == 200, found.text
    detail: dict[str, Any] = found.json()
    return detail


def finished(port: int, instance_id: str) -> Callable[[], dict[str, Any] | None]:
    """A check for `wait_for`: the instance's detail once its run is over (ack sent, recorded).
    The detail reads the file's progress and the instance apart, so one read can fall
    between the two and the other after: both are waited for."""

    def check() -> dict[str, Any] | None:
        detail = instance(port, instance_id)
        over = detail["file"]["state"] == "done" and detail["status"] != "in_progress"
        return detail if over else None

    return check


def test_a_hub_killed_mid_file_finishes_it_after_a_restart(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    tmp_path: Path,
) -> None:
    rows = 3000
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={"size": 100, "parallelism": 2, "lease_seconds": 2, "poll_seconds": 0.2},
    )
    port = ports_to_bind()
    hub = serve(processes, settings, port)
    # 30 segments, two at a time, 100 ms each: the file takes about 1.5 s.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 100}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)

    instance_id = send_file(port, reservation("RSV-KILL"), csv_file)["instanceId"]
    wait_for(
        lambda: reserved(cpmcs_sim)["devices"] >= 500,
        20,
        "CPMCS received no 500 devices",
        processes,
        watch=hub,
        interval=0.01,
    )
    # Killed just as a segment reaches CPMCS: it waits there 100 ms, so the hub holds it
    # under a lease, sending, when it dies.
    arrived = reserve_calls(cpmcs_sim)
    wait_for(
        lambda: reserve_calls(cpmcs_sim) > arrived,
        10,
        "no further segment reached CPMCS",
        processes,
        watch=hub,
        interval=0.005,
    )
    hub.kill()
    at_kill = reserved(cpmcs_sim)
    assert at_kill["devices"] < rows, f"the file was done before the kill: {at_kill}"
    assert acks(derms_sim) == []

    restarted = serve(processes, settings, port)
    wait_for(
        lambda: acks(derms_sim),
        FINISH_SECONDS,
        "DERMS received no acknowledgement",
        processes,
        watch=restarted,
    )
    detail = wait_for(finished(port, instance_id), 10, "the run was not recorded", processes)

    summary = reserved(cpmcs_sim)
    assert summary["devices"] == rows, (
        f"CPMCS holds {summary['devices']} devices of {rows}: {summary}; at the kill: {at_kill}"
    )
    # A segment in flight at the kill may have reached CPMCS and goes again after its lease:
    # CPMCS keeps each device once, so a duplicate is harmless; at most two segments' worth.
    assert summary["duplicates"] <= 2 * 100, (
        f"{summary['duplicates']} duplicates (at the kill: {at_kill})"
    )
    # Each reserveDevice call CPMCS took is one segment of 100 devices: those over 30 are
    # segments it took twice.
    received_twice = summary["calls"] - 30
    assert summary["duplicates"] == 100 * received_twice, summary
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "SUCCESS", ack
    assert detail["status"] == "succeeded", detail
    assert detail["file"]["rows_sent"] == rows
    assert detail["file"]["segments"] == {"pending": 0, "sending": 0, "accepted": 30, "failed": 0}
    with sqlite3.connect(tmp_path / "hub.db") as connection:
        taken_over = connection.execute(
            "SELECT seq, attempts FROM segments WHERE attempts > 1 ORDER BY seq"
        ).fetchall()
    # The hub cannot know which of the segments its dead process held had gone: it counts
    # every one taken over. Those it had claimed ahead and not sent yet had not gone, so
    # the count may be above what CPMCS took twice by as many as it claims ahead (it holds
    # at most three times the parallelism, 2, those in flight included).
    sent_again = detail["file"]["segments_sent_again"]
    assert sent_again == len(taken_over), (sent_again, taken_over)
    assert received_twice <= sent_again <= received_twice + 3 * 2, (sent_again, summary)
    assert ack_value(ack) == (
        f"{rows} rows in 30 segments taken by CPMCS reserveDevice (run 1); "
        f"{sent_again} {'segment' if sent_again == 1 else 'segments'} sent more than once"
    )
    metrics = httpx.get(f"http://{LOOPBACK}:{port}/metrics", auth=OPERATOR_AUTH, timeout=10).text
    counted = sorted(line for line in metrics.splitlines() if "segments_sent_again_total{" in line)
    # Each file flow's counter is there from the start, at 0 until a segment goes again.
    assert counted == [
        'derms_bridge_segments_sent_again_total{flow="event_device_outcome"} 0.0',
        f'derms_bridge_segments_sent_again_total{{flow="event_device_reservation"}} '
        f"{float(sent_again)}",
    ]
    # Reported with -rP: how many devices went twice because of the kill.
    print(
        f"devices at the kill: {at_kill['devices']}; duplicates: {summary['duplicates']}; "
        f"segments CPMCS took twice: {received_twice}; counted by the hub: {sent_again}; "
        f"taken over (seq, attempts): {taken_over}"
    )


def test_a_hub_stopped_mid_file_exits_at_once_and_its_restart_finishes_the_file(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    tmp_path: Path,
) -> None:
    rows, segments = 2000, 40
    database = tmp_path / "hub.db"
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{database}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={
            "size": rows // segments,
            "parallelism": 2,
            "lease_seconds": LONG_LEASE_SECONDS,
            "poll_seconds": 0.2,
        },
        processes={"stop_grace_seconds": STOP_GRACE_SECONDS},
    )
    port = ports_to_bind()
    hub = serve(processes, settings, port)
    # Two segments a second: the file would take the hub 20 s.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 1000}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)
    instance_id = send_file(port, reservation("RSV-STOP-SERVE"), csv_file)["instanceId"]
    wait_for(
        lambda: reserved(cpmcs_sim)["devices"] >= 4 * rows // segments,
        30,
        "CPMCS received no four segments",
        processes,
        watch=hub,
    )

    code, took = hub.stop(STOP_GRACE_SECONDS + STOP_MARGIN_SECONDS)
    assert code == 0, hub.describe()
    at_stop = reserved(cpmcs_sim)
    assert at_stop["devices"] < rows, f"the file was done before the stop: {at_stop}"
    with sqlite3.connect(database) as connection:
        held = connection.execute(
            "SELECT (SELECT count(*) FROM segments WHERE status = 'sending')"
            " + (SELECT count(*) FROM file_jobs WHERE owner IS NOT NULL)"
        ).fetchone()
    # Every segment it had claimed and not sent went back: none waits for its lease.
    assert held == (0,), hub.describe()
    assert "Traceback" not in hub.stderr.text, hub.describe()

    restarted = serve(processes, settings, port)
    wait_for(
        lambda: acks(derms_sim),
        LONG_LEASE_SECONDS / 2,
        "the restarted hub did not finish the file well before the leases would have run out",
        processes,
        watch=restarted,
    )
    detail = wait_for(finished(port, instance_id), 10, "the run was not recorded", processes)
    summary = reserved(cpmcs_sim)
    # The calls in flight at the signal ended within the grace: none went twice.
    assert (summary["devices"], summary["duplicates"]) == (rows, 0), (summary, at_stop)
    assert reserve_calls(cpmcs_sim) == segments
    assert ack_types(derms_sim) == ["SUCCESS"]
    assert detail["status"] == "succeeded", detail
    print(f"serve exited {took:.1f} s after SIGTERM, {at_stop['devices']} devices sent by then")


def test_a_segment_cpmcs_refuses_fails_the_file_and_the_resend_completes_it(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    tmp_path: Path,
) -> None:
    rows = 1000
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={
            "size": 100,
            "parallelism": 2,
            "lease_seconds": 10,
            "poll_seconds": 0.2,
            # Never tried again, so that one 500 fails the segment.
            "retry": {"attempts": 1},
        },
    )
    port = ports_to_bind()
    hub = serve(processes, settings, port)
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 500, "fail_calls": [3], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)

    first = send_file(port, reservation("RSV-500"), csv_file)
    instance_id = first["instanceId"]
    wait_for(lambda: acks(derms_sim), 20, "no FAILURE acknowledgement", processes, watch=hub)
    detail = wait_for(finished(port, instance_id), 10, "the failure was not recorded", processes)

    [failure] = acks(derms_sim)
    assert failure["MsgAck"]["ackType"] == "FAILURE", failure
    assert "HTTP 500" in ack_value(failure)
    assert detail["status"] == "failed"
    segments = detail["file"]["segments"]
    assert segments["failed"] == 1
    assert segments["sending"] == 0
    # The failure stopped the segments not yet claimed from going.
    assert segments["pending"] > 0, segments
    assert reserved(cpmcs_sim)["devices"] == 100 * segments["accepted"]

    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    again = send_file(port, reservation("RSV-500"), csv_file)
    assert again == {"instanceId": instance_id, "resumed": True, "acknowledgedAgain": False}
    wait_for(lambda: len(acks(derms_sim)) == 2, 20, "no second acknowledgement", processes)
    detail = wait_for(finished(port, instance_id), 10, "the resend was not recorded", processes)

    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"]) == (rows, 0), summary
    assert ack_types(derms_sim) == ["FAILURE", "SUCCESS"]
    assert detail["status"] == "succeeded"
    assert detail["file"]["run"] == 2
    assert detail["file"]["rows_sent"] == rows


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the hub migrates it), dropped at the end."""
    name = f"derms_bridge_e2e_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sessions_named(database_url: str, application_name: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


def test_two_worker_processes_share_one_file_on_postgresql(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    rows = 2000
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=postgres_url,
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={"size": 50, "parallelism": 2, "lease_seconds": 10, "poll_seconds": 0.1},
    )
    port = ports_to_bind()
    # The API process migrates the database; the worker starts on the migrated schema.
    hub = serve(processes, settings, port)
    worker = start_worker(processes, settings, postgres_url)
    # 40 segments at 50 ms each: about a second for one worker, so both get work.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 50}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)

    instance_id = send_file(port, reservation("RSV-TWO"), csv_file)["instanceId"]
    wait_for(
        lambda: acks(derms_sim), FINISH_SECONDS, "DERMS received no acknowledgement", processes
    )
    detail = wait_for(finished(port, instance_id), 10, "the run was not recorded", processes)

    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"]) == (rows, 0), summary
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "SUCCESS", ack
    assert detail["status"] == "succeeded", detail
    assert detail["file"]["rows_sent"] == rows
    with psycopg.connect(postgres_url) as connection:
        owners = connection.execute(
            "SELECT owner, count(*) FROM segments WHERE instance_id = %s AND status = 'accepted' "
            "GROUP BY owner",
            (instance_id,),
        ).fetchall()
    # A worker's name is host:pid:id.
    by_pid: dict[int, int] = {}
    for owner, count in owners:
        pid = int(owner.split(":")[1])
        by_pid[pid] = by_pid.get(pid, 0) + count
    assert sum(by_pid.values()) == 40
    assert set(by_pid) == {hub.pid, worker.pid}, (
        f"segments sent per pid: {by_pid}; serve is {hub.pid}, worker is {worker.pid}"
    )
    print(f"segments sent per process: serve {by_pid[hub.pid]}, worker {by_pid[worker.pid]}")


def segments_held_by(database_url: str, pid: int) -> int:
    """Segments and jobs a process holds under a lease (its workers are named host:pid:id)."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM segments WHERE status = 'sending'"
            " AND owner LIKE %(owner)s)"
            " + (SELECT count(*) FROM file_jobs WHERE owner LIKE %(owner)s)",
            {"owner": f"%:{pid}:%"},
        ).fetchone()
    assert row is not None
    held: int = row[0]
    return held


def segments_sent_by(database_url: str, instance_id: str, pid: int) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM segments WHERE instance_id = %s AND status = 'accepted' "
            "AND owner LIKE %s",
            (instance_id, f"%:{pid}:%"),
        ).fetchone()
    assert row is not None
    sent: int = row[0]
    return sent


def test_a_worker_stopped_mid_file_hands_its_segments_to_the_other_at_once(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    rows, segments = 6000, 120
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=postgres_url,
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={
            "size": rows // segments,
            "parallelism": 4,
            "lease_seconds": LONG_LEASE_SECONDS,
            "poll_seconds": 0.1,
        },
        processes={"stop_grace_seconds": STOP_GRACE_SECONDS},
    )
    port = ports_to_bind()
    hub = serve(processes, settings, port)
    worker = start_worker(processes, settings, postgres_url)
    # A second a segment, four at a time in each process: about 15 s for the two; a worker
    # that went on claiming after the signal would go on for most of that.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 1000}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)
    instance_id = send_file(port, reservation("RSV-STOP-WORKER"), csv_file)["instanceId"]
    wait_for(
        lambda: segments_sent_by(postgres_url, instance_id, worker.pid) >= 4,
        30,
        "the worker sent no four segments",
        processes,
        watch=worker,
    )

    code, took = worker.stop(STOP_GRACE_SECONDS + STOP_MARGIN_SECONDS)
    stopped = time.monotonic()
    assert code == 0, worker.describe()
    # Its segments claimed ahead went back at once, for the other process to take.
    assert segments_held_by(postgres_url, worker.pid) == 0, worker.describe()
    with psycopg.connect(postgres_url) as connection:
        still_alive = connection.execute(
            "SELECT count(*) FROM hub_processes WHERE name LIKE %s AND stopped_at IS NULL",
            (f"%:{worker.pid}:%",),
        ).fetchone()
    # It said it stopped (or the other process has already forgotten it).
    assert still_alive == (0,)
    assert "Traceback" not in worker.stderr.text, worker.describe()

    wait_for(
        lambda: acks(derms_sim),
        LONG_LEASE_SECONDS / 2,
        "the other process did not finish the file well before the leases would have run out",
        processes,
        watch=hub,
    )
    finished_after = time.monotonic() - stopped
    detail = wait_for(finished(port, instance_id), 10, "the run was not recorded", processes)
    summary = reserved(cpmcs_sim)
    # The calls in flight at the signal ended within the grace: none went twice.
    assert (summary["devices"], summary["duplicates"]) == (rows, 0), summary
    assert reserve_calls(cpmcs_sim) == segments
    assert ack_types(derms_sim) == ["SUCCESS"]
    assert detail["status"] == "succeeded", detail
    assert detail["file"]["rows_sent"] == rows
    print(
        f"worker exited {took:.1f} s after SIGTERM; serve finished the file "
        f"{finished_after:.1f} s later"
    )


def test_an_acknowledgement_slower_than_the_lease_is_sent_once(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    # The defaults do the same on a larger scale: a lease of 60 s against 5 tries of DERMS's
    # acknowledgement with a read timeout of 30 s each.
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=postgres_url,
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={
            "size": 50,
            "parallelism": 2,
            "lease_seconds": SHORT_LEASE_SECONDS,
            "poll_seconds": 0.1,
        },
        read_seconds=SLOW_READ_SECONDS,
    )
    port = ports_to_bind()
    serve(processes, settings, port)
    start_worker(processes, settings, postgres_url)
    derms_sim.put("/_sim/faults", json={"latency_ms": SLOWER_THAN_THE_LEASE_MS}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", 10)

    instance_id = send_file(port, reservation("RSV-SLOW-ACK"), csv_file)["instanceId"]
    wait_for(
        lambda: instance(port, instance_id)["status"] != "in_progress",
        FINISH_SECONDS,
        "the acknowledgement was not sent",
        processes,
    )
    time.sleep(2.0)

    detail = instance(port, instance_id)
    assert ack_types(derms_sim) == ["SUCCESS"]
    assert detail["file"]["state"] == "done", detail["file"]


def test_segments_slower_than_the_lease_are_sent_once(
    processes: Processes,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    # One worker claims all four segments: two are sent while two wait in its reserve, and
    # both kinds must keep their leases, or the other worker would send them again.
    rows = 200
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=postgres_url,
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={
            "size": 50,
            "parallelism": 2,
            "lease_seconds": SHORT_LEASE_SECONDS,
            "poll_seconds": 0.1,
        },
        read_seconds=SLOW_READ_SECONDS,
    )
    port = ports_to_bind()
    serve(processes, settings, port)
    worker = start_worker(processes, settings, postgres_url)
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": SLOWER_THAN_THE_LEASE_MS}).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", rows)

    instance_id = send_file(port, reservation("RSV-SLOW-SEGMENTS"), csv_file)["instanceId"]
    wait_for(lambda: acks(derms_sim), FINISH_SECONDS, "no acknowledgement", processes, watch=worker)
    time.sleep(2.0)

    assert ack_types(derms_sim) == ["SUCCESS"]
    assert reserve_calls(cpmcs_sim) == rows // 50
    assert reserved(cpmcs_sim)["devices"] == rows
    assert instance(port, instance_id)["file"]["state"] == "done"


def test_an_upload_its_client_gives_up_on_keeps_no_file(
    processes: Processes,
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
        segments={"size": 1000},
    )
    port = ports_to_bind()
    serve(processes, settings, port)
    csv_file = write_reservation_csv(tmp_path / "reservations.csv", 200_000)
    message = json.dumps(reservation("RSV-GONE")).encode()
    body = multipart_body(Part("message", message), Part("file", csv_file.read_bytes(), "d.csv"))
    credentials = base64.b64encode(":".join(DERMS_AUTH).encode()).decode()
    head = (
        f"POST {RESERVATION} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    # Most of the body, more than the sockets' buffers hold: the hub has read, checked and
    # written much of the file when the client goes.
    with socket.create_connection((LOOPBACK, port)) as connection:
        connection.sendall(head + body[: len(body) * 3 // 4])

    # Sent whole, the same message is a new file: nothing of the first was kept.
    reply = httpx.post(
        f"http://{LOOPBACK}:{port}{RESERVATION}",
        content=body,
        headers={"Content-Type": CONTENT_TYPE},
        auth=DERMS_AUTH,
        timeout=30,
    )
    assert reply.status_code == 202, reply.text
    assert reply.json()["resumed"] is False
    listed = httpx.get(
        f"http://{LOOPBACK}:{port}/ops/instances",
        params={"key": "RSV-GONE"},
        auth=OPERATOR_AUTH,
        timeout=10,
    ).json()
    # The upload given up on is kept as a rejected message, with nothing of its file.
    kept_id, gone_id = (item["id"] for item in listed["items"])
    assert kept_id == reply.json()["instanceId"]
    assert [item["status"] for item in listed["items"]][1] == "rejected"
    assert instance(port, kept_id)["file"]["total_rows"] == 200_000
    assert instance(port, gone_id)["file"] is None
