"""`derms-bridge sandbox` as a user starts it: a real process, real ports, curl, Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from derms_bridge.sandbox.servers import LOOPBACK
from tests.ports import ports_to_bind

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "enrollment-request.json"
NETWORK_MODEL_MESSAGE = ROOT / "examples" / "network-model.json"
NETWORK_MODEL_FILE = ROOT / "examples" / "network-model.csv"
RESERVATION_MESSAGE = ROOT / "examples" / "device-reservation.json"
RESERVATION_FILE = ROOT / "examples" / "device-reservation.csv"
#: How long a `derms-bridge` process may take to start and answer: far more than it needs,
#: for a machine loaded by the other pytest workers and by other test runs.
STARTUP_SECONDS = 120.0
SHUTDOWN_SECONDS = 15.0

DERMS = ("derms", "derms-sandbox")
CPMCS = ("cpmcs", "cpmcs-sandbox")
OPERATOR = ("operator", "operator-sandbox")


def console_script() -> Path:
    beside = Path(sys.executable).parent / "derms-bridge"
    return beside if beside.is_file() else ROOT / ".venv" / "bin" / "derms-bridge"


def listens(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex((LOOPBACK, port)) == 0


def start_demo(
    folder: Path, port: int, *, seed: int, scale: str, stderr: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """`derms-bridge sandbox --demo` on ports `port` to `port + 5`, its database and var/ in
    `folder`, none of the test run's DERMS_BRIDGE_ settings in its environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}
    return subprocess.Popen(  # noqa: S603 - the project's own command
        [
            str(console_script()),
            "sandbox",
            "--demo",
            "--seed",
            str(seed),
            "--demo-scale",
            scale,
            "--port",
            str(port),
            "--database",
            f"sqlite:///{folder / 'demo.db'}",
            "--lookups",
            str(ROOT / "config" / "lookups"),
        ],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@dataclass
class Output:
    """Everything a stream of the process wrote, read in a thread so the pipe never fills."""

    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self, stream: IO[str]) -> threading.Thread:
        def read() -> None:
            for line in stream:
                with self.lock:
                    self.lines.append(line)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    @property
    def text(self) -> str:
        with self.lock:
            return "".join(self.lines)


@dataclass
class Sandbox:
    process: subprocess.Popen[str]
    port: int
    stdout: Output
    stderr: Output
    #: The sandbox's var/: its FTP server's files, its object store's objects.
    var: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def describe(self) -> str:
        return f"stdout:\n{self.stdout.text}\nstderr:\n{self.stderr.text}"


def wait_until_healthy(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if sandbox.process.poll() is not None:
            pytest.fail(
                f"the sandbox exited with {sandbox.process.returncode}\n{sandbox.describe()}"
            )
        try:
            if httpx.get(f"{sandbox.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(
        f"the sandbox did not answer /healthz within {STARTUP_SECONDS} s\n{sandbox.describe()}"
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    port = ports_to_bind(6)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DERMS_BRIDGE_")}
    # Run where its var/ (the FTP server's files, the object store's) is the test's own.
    process = subprocess.Popen(  # noqa: S603
        [
            str(console_script()),
            "sandbox",
            "--port",
            str(port),
            "--database",
            f"sqlite:///{tmp_path / 'sbx.db'}",
            "--lookups",
            str(ROOT / "config" / "lookups"),
            "--derms-max-retries",
            "2",
            "--derms-retry-delay",
            "2",
        ],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    started = Sandbox(
        process=process, port=port, stdout=Output(), stderr=Output(), var=tmp_path / "var"
    )
    readers = [started.stdout.follow(process.stdout), started.stderr.follow(process.stderr)]
    try:
        wait_until_healthy(started)
        yield started
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=5)


def test_the_sandbox_serves_the_example_and_stops_on_ctrl_c(sandbox: Sandbox) -> None:
    hub = sandbox.url
    banner = sandbox.stdout.text
    assert hub in banner
    for simulator, port in (("CPMCS simulator", 1), ("DERMS simulator", 2)):
        assert f"{simulator}  http://{LOOPBACK}:{sandbox.port + port}" in banner, banner
    assert f"SMTP sink        {LOOPBACK}:{sandbox.port + 3}" in banner
    for user, password in (DERMS, CPMCS, OPERATOR):
        assert f"{user} / {password}" in banner, banner

    # What the banner's curl line sends: the file's bytes, as JSON, with the DERMS credential.
    reply = httpx.post(
        f"{hub}/enroll-to-dacs",
        content=EXAMPLE.read_bytes(),
        headers={"Content-Type": "application/json"},
        auth=DERMS,
        timeout=30,
    )

    assert reply.status_code == 200, reply.text
    ack: dict[str, Any] = reply.json()["MsgAck"]
    assert ack["ackType"] == "ERROR"
    responses = ack["responses"]["response"]
    assert [(r["id"], r["responseCode"]) for r in responses] == [
        ("M-1001", "SUCCESS"),
        ("M-1002", "ERROR"),
    ]
    assert responses[0]["value"] == "PENDING"
    assert responses[0]["dacsMessageId"]
    assert "Program NOSUCH is not defined" in responses[1]["value"]

    found = httpx.get(f"{hub}/ops/instances", params={"key": "M-1001"}, auth=OPERATOR, timeout=10)
    assert found.status_code == 200, found.text
    [instance] = found.json()["items"]
    assert instance["id"] == reply.headers["X-Instance-Id"]
    detail = httpx.get(f"{hub}/ops/instances/{instance['id']}", auth=OPERATOR, timeout=10).json()
    assert detail["reply"]["MsgAck"]["ackType"] == "ERROR"
    assert [a["operation"] for a in detail["activities"]] == ["enrollProgram", "enrollProgram"]

    # The credentials are the sandbox's own: another role's password does not pass.
    refused = httpx.get(f"{hub}/ops/instances", auth=DERMS, timeout=10)
    assert refused.status_code == 401

    sandbox.process.send_signal(signal.SIGINT)
    try:
        code = sandbox.process.wait(timeout=SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the sandbox still runs {SHUTDOWN_SECONDS} s after SIGINT\n{sandbox.describe()}"
        )
    assert code == 0, sandbox.describe()
    # Its simulators and SMTP sink went with it.
    for offset in range(6):
        assert not listens(sandbox.port + offset), offset


def finished_instance(sandbox: Sandbox, instance_id: str) -> dict[str, Any]:
    """The instance as an operator reads it once its run is over."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        found = httpx.get(f"{sandbox.url}/ops/instances/{instance_id}", auth=OPERATOR, timeout=10)
        if found.status_code == 200 and found.json()["status"] != "in_progress":
            instance: dict[str, Any] = found.json()
            return instance
        time.sleep(0.1)
    pytest.fail(f"instance {instance_id} still runs\n{sandbox.describe()}")


def run_now(sandbox: Sandbox, flow: str) -> dict[str, Any]:
    started = httpx.post(f"{sandbox.url}/ops/schedules/{flow}/run", auth=OPERATOR, timeout=30)
    assert started.status_code == 202, started.text
    return finished_instance(sandbox, started.json()["instanceId"])


def device_scores_received(sandbox: Sandbox) -> dict[str, str]:
    """File name -> sha256 of each device score file the DERMS simulator received."""
    derms = f"http://{LOOPBACK}:{sandbox.port + 2}"
    received = httpx.get(f"{derms}/_sim/state/received", timeout=10).json()
    return {each["fileName"]: each["sha256"] for each in received.get("/device-score", [])}


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_the_sandbox_carries_the_file_flows_through_its_ftp_server_and_object_store(
    sandbox: Sandbox,
) -> None:
    banner = sandbox.stdout.text
    assert f"FTP server       ftp://{LOOPBACK}:{sandbox.port + 4}" in banner, banner
    assert f"object store     http://{LOOPBACK}:{sandbox.port + 5}" in banner, banner
    ftp_folder = sandbox.var / "sandbox-ftp" / "outbound" / "device-score"
    bucket = sandbox.var / "sandbox-object-store" / "cpmcs" / "device-score"
    waiting = digests(ftp_folder)
    assert sorted(waiting) == [f"SDCSE_20261126_{n}.csv" for n in (1, 2, 3)]
    assert digests(bucket) == waiting

    # Flow 16: the FTP server's files, read through aioftp, to DERMS.
    ftp_run = run_now(sandbox, "device_score_ftp")

    assert ftp_run["status"] == "succeeded", ftp_run["error"]
    assert ftp_run["reply"]["sent"] == sorted(waiting)
    assert device_scores_received(sandbox) == waiting
    assert sorted(path.name for path in ftp_folder.iterdir()) == [f"Sent-{n}" for n in waiting]
    assert {a["target"] for a in ftp_run["activities"]} == {"ftp", "DERMS default"}

    # Flow 17: the bucket's objects, through the oci SDK in the hub, to DERMS again.
    httpx.delete(f"http://{LOOPBACK}:{sandbox.port + 2}/_sim/state", timeout=10)
    os_run = run_now(sandbox, "device_score_os")

    assert os_run["status"] == "succeeded", os_run["error"]
    assert os_run["flow_identifier"] == "OUTL-BA-DRMS_DACS_SEND_DVCSCOREC"
    assert device_scores_received(sandbox) == waiting
    assert sorted(path.name for path in bucket.iterdir()) == [f"Sent-{n}" for n in waiting]
    assert {a["target"] for a in os_run["activities"]} == {"object storage", "DERMS default"}

    # Flow 15: the banner's curl line; the shipped preference "os" puts it in the bucket.
    message = json.loads(NETWORK_MODEL_MESSAGE.read_text())
    accepted = httpx.post(
        f"{sandbox.url}/network-model-to-dacs",
        data={"message": NETWORK_MODEL_MESSAGE.read_text()},
        files={"file": (NETWORK_MODEL_FILE.name, NETWORK_MODEL_FILE.read_bytes(), "text/csv")},
        auth=DERMS,
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    transfer = finished_instance(sandbox, accepted.json()["instanceId"])

    assert transfer["status"] == "succeeded", transfer["error"]
    landed = sandbox.var / "sandbox-object-store" / "cpmcs" / "sp-network-location"
    assert (landed / message["fileName"]).read_bytes() == NETWORK_MODEL_FILE.read_bytes()

    # Each run's process-complete email, as the sink prints it.
    deadline = time.monotonic() + 10
    while sandbox.stdout.text.count("mail to ") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    mails = [line for line in sandbox.stdout.text.splitlines() if line.startswith("mail to ")]
    assert any("Device Score FTP Transfer complete: 3 sent, 0 not sent" in m for m in mails), mails
    assert any("complete: 3 sent, 0 not sent" in m and "FTP" not in m for m in mails), mails
    assert len(mails) == 3, mails


def test_the_sandbox_derms_resends_a_file_after_a_failure_until_cpmcs_is_back(
    sandbox: Sandbox,
) -> None:
    cpmcs = f"http://{LOOPBACK}:{sandbox.port + 1}"
    derms = f"http://{LOOPBACK}:{sandbox.port + 2}"
    assert httpx.get(f"{derms}/_sim/retries", timeout=10).json() == {
        "max_retries": 2,
        "retry_delay_seconds": 2.0,
    }
    # CPMCS down for the hub's first health check.
    httpx.put(
        f"{cpmcs}/_sim/faults",
        json={"fail_calls": [1], "fail_calls_path": "/rest/apis/common/healthCheck"},
        timeout=10,
    ).raise_for_status()

    sent = httpx.post(
        f"{derms}/_sim/send/device-reservation",
        files={
            "message": (None, RESERVATION_MESSAGE.read_bytes()),
            "file": ("device-reservation.csv", RESERVATION_FILE.read_bytes(), "text/csv"),
        },
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["hubAnswer"] == 202

    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        [state] = httpx.get(f"{derms}/_sim/state/sent", timeout=10).json()
        last = state["attempts"][-1]
        settled = last["ackType"] is not None and state["nextAttemptAt"] is None
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state["messageId"] == "RSV-100"
    assert [attempt["ackType"] for attempt in state["attempts"]] == ["FAILURE", "SUCCESS"]
