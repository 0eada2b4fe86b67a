"""/metrics and the logs of real hub processes: two `derms-bridge serve` on one database
and one metrics directory, each doing part of the work."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH
from tests.e2e.test_file_faults import (  # the fixtures as well, for this module's tests
    Processes,
    caller_hashes,  # noqa: F401
    processes,  # noqa: F401
    serve,
    write_settings,
)
from tests.payloads import enrollment_message, enrollment_request
from tests.ports import ports_to_bind

FLOW = "enrollment_request"
CPMCS_PASSWORD = "cpmcs-password-never-logged"


def received(port: int) -> float:
    reply = httpx.get(f"http://{LOOPBACK}:{port}/metrics", auth=OPERATOR_AUTH, timeout=10)
    assert reply.status_code == 200, reply.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
        if sample.name == "derms_bridge_instances_received_total"
        and sample.labels == {"flow": FLOW}
    )


def enroll(port: int, message_id: str) -> None:
    reply = httpx.post(
        f"http://{LOOPBACK}:{port}/enroll-to-dacs",
        json=enrollment_message(enrollment_request(message_id)),
        auth=DERMS_AUTH,
        timeout=30,
    )
    assert reply.status_code in (200, 502), reply.text


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_two_processes_count_into_one_scrape_and_log_their_instances(
    processes: Processes,  # noqa: F811
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings_file = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={},
    )
    settings: dict[str, Any] = yaml.safe_load(settings_file.read_text())
    settings["metrics"] = {"dir": str(tmp_path / "metrics")}
    settings["connections"]["cpmcs"]["auth"] = {
        "type": "basic",
        "username": "hub",
        "password": CPMCS_PASSWORD,
    }
    settings_file.write_text(yaml.safe_dump(settings))
    first_port, second_port = ports_to_bind(), ports_to_bind()
    first = serve(processes, settings_file, first_port)
    second = serve(processes, settings_file, second_port)

    enroll(first_port, "TWO-1")
    enroll(second_port, "TWO-2")
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    enroll(second_port, "TWO-3")

    assert received(first_port) == 3
    assert received(second_port) == 3
    # A process that stops leaves its counts behind: totals never go back.
    second.process.send_signal(signal.SIGTERM)
    second.process.wait(timeout=30)
    assert received(first_port) == 3

    second.kill()
    lines = log_lines(second.stderr.text)
    failed = [line for line in lines if line["message"] == "flow error"]
    assert failed, second.stderr.text
    assert all(line["flow"] == FLOW and line["instance_id"] for line in failed)
    everything = first.stderr.text + second.stderr.text
    assert CPMCS_PASSWORD not in everything


@pytest.fixture(autouse=True)
def cpmcs_answers_again(cpmcs_sim: httpx.Client) -> Any:
    yield
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
