"""The DERMS simulator sends the hub reservation and outcome files, and sends one again after a
FAILURE acknowledgement as DERMS does by its MAX_RETRIES: a real hub on loopback between it
and the CPMCS simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import build_hub, local_file_stores
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.cpmcs_sim import HEALTH_CHECK_PATH
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.settings.connections import Caller
from tests.conftest import DERMS_AUTH, empty_tables, hub_settings
from tests.csv_files import Corruption, write_outcome_csv, write_reservation_csv
from tests.ports import ports_to_bind

#: Long enough for a loaded machine to run a hub's worker through a few files.
DEADLINE_SECONDS = 120.0

RESERVATION = {
    "drmsInstanceId": "DRMS-7",
    "messageId": "RSV-1",
    "eventId": "EV-1",
    "stageId": "ST-1",
    "eventType": "ECONOMIC",
    "eventStartDateTime": "2026-12-01T14:00:00Z",
    "eventEndDateTime": "2026-12-01T18:00:00Z",
}
#: A resend that reaches the hub while it is still recording the run that DERMS was just told
#: FAILED is taken as a resend of a file still being sent, and never acknowledged: DERMS
#: resends minutes later, and the tests leave the hub a moment too.
RETRY_DELAY_SECONDS = 2.0
OUTCOME = {"drmsInstanceId": "DRMS-7", "messageId": "OUT-1", "fileName": "outcomes.csv"}


@pytest.fixture
def derms(
    database_url: str,
    cpmcs_server: ServerThread,
    cpmcs_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
    default_lookups: Lookups,
    tmp_path: Path,
) -> Iterator[httpx.Client]:
    """The admin side of a DERMS simulator that sends to a hub serving on loopback, with its
    workers, and takes that hub's acknowledgements; resends after RETRY_DELAY_SECONDS."""
    empty_tables(database_url)
    hub_port = ports_to_bind()
    derms_app = create_derms_app(hub_url=f"http://127.0.0.1:{hub_port}", hub_credentials=DERMS_AUTH)
    with ServerThread(derms_app, name="sending DERMS simulator") as derms_server:
        settings = hub_settings(database_url, cpmcs_server.url, derms_server.url, mailbox, callers)
        built = build_hub(settings, default_lookups, local_file_stores(tmp_path / "stores"))
        with (
            ServerThread(create_app(built), port=hub_port, name="hub"),
            httpx.Client(base_url=derms_server.url, timeout=60) as client,
        ):
            client.put(
                "/_sim/retries", json={"max_retries": 3, "retry_delay_seconds": RETRY_DELAY_SECONDS}
            ).raise_for_status()
            yield client


def send(derms: httpx.Client, flow: str, message: dict[str, Any], csv_file: Path) -> None:
    sent = derms.post(
        f"/_sim/send/{flow}",
        data={"message": json.dumps(message)},
        files={"file": (csv_file.name, csv_file.read_bytes(), "text/csv")},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["hubAnswer"] == 202


def sent_file(derms: httpx.Client, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The one file sent, once `until` holds of it (its state then, else at the deadline)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        [sent] = derms.get("/_sim/state/sent").json()
        assert isinstance(sent, dict)
        if until(sent) or time.monotonic() > deadline:
            return sent
        time.sleep(0.2)


def settled(sent: dict[str, Any]) -> bool:
    """The last attempt acknowledged and no other to come."""
    return sent["attempts"][-1]["ackType"] is not None and sent["nextAttemptAt"] is None


def acknowledged(sent: dict[str, Any]) -> bool:
    return sent["attempts"][-1]["ackType"] is not None


def ack_types(sent: dict[str, Any]) -> list[str | None]:
    return [attempt["ackType"] for attempt in sent["attempts"]]


@pytest.mark.parametrize("flow", ["device-reservation", "device-outcome"])
def test_after_a_failure_ack_the_same_file_goes_again_and_succeeds(
    derms: httpx.Client, cpmcs_sim: httpx.Client, tmp_path: Path, flow: str
) -> None:
    # CPMCS is down for the first health check only.
    cpmcs_sim.put(
        "/_sim/faults", json={"fail_calls": [1], "fail_calls_path": HEALTH_CHECK_PATH}
    ).raise_for_status()
    if flow == "device-reservation":
        message, csv_file = RESERVATION, write_reservation_csv(tmp_path / "r.csv", 25)
    else:
        message, csv_file = OUTCOME, write_outcome_csv(tmp_path / "outcomes.csv", 25)

    send(derms, flow, message, csv_file)
    sent = sent_file(derms, settled)

    assert ack_types(sent) == ["FAILURE", "SUCCESS"]
    [first, resend] = sent["attempts"]
    assert first["hubReply"]["resumed"] is False
    assert resend["hubReply"]["resumed"] is True
    assert resend["hubReply"]["instanceId"] == first["hubReply"]["instanceId"]
    assert {attempt["hubAnswer"] for attempt in sent["attempts"]} == {202}
    assert sent["messageId"] == message["messageId"]
    assert sent["lastAckType"] == "SUCCESS"
    assert sent["nextAttemptAt"] is None
    assert sent["size"] == csv_file.stat().st_size


@pytest.mark.parametrize("corrupt", [{}, {3: Corruption.LONG_NIC_ID}], ids=["SUCCESS", "ERROR"])
def test_no_file_goes_again_after_a_success_or_an_error_ack(
    derms: httpx.Client, tmp_path: Path, corrupt: dict[int, Corruption]
) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 10, corrupt=corrupt)

    send(derms, "device-reservation", RESERVATION, csv_file)
    sent = sent_file(derms, settled)

    assert ack_types(sent) == ["ERROR" if corrupt else "SUCCESS"]
    assert sent["nextAttemptAt"] is None
    assert sent["retriesLeft"] == 3


def test_the_resends_stop_after_max_retries(
    derms: httpx.Client, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    derms.put("/_sim/retries", json={"max_retries": 2, "retry_delay_seconds": RETRY_DELAY_SECONDS})

    send(derms, "device-reservation", RESERVATION, write_reservation_csv(tmp_path / "r.csv", 5))
    sent = sent_file(derms, settled)

    assert ack_types(sent) == ["FAILURE", "FAILURE", "FAILURE"]
    assert sent["retriesLeft"] == 0
    assert sent["nextAttemptAt"] is None


def test_a_resend_waits_for_the_delay(
    derms: httpx.Client, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": 503}).raise_for_status()
    derms.put("/_sim/retries", json={"max_retries": 1, "retry_delay_seconds": 3600})

    send(derms, "device-reservation", RESERVATION, write_reservation_csv(tmp_path / "r.csv", 5))
    sent = sent_file(derms, acknowledged)

    assert ack_types(sent) == ["FAILURE"]
    assert sent["nextAttemptAt"] is not None
    assert sent["retriesLeft"] == 1


def test_retry_settings_are_checked(derms: httpx.Client) -> None:
    refused = derms.put("/_sim/retries", json={"max_retries": -1, "retry_delay_seconds": 0})

    assert refused.status_code == 422
    assert "max_retries" in refused.text
    assert derms.delete("/_sim/retries").json() == {"max_retries": 3, "retry_delay_seconds": 30.0}


def test_a_simulator_without_a_hub_refuses_to_send(derms_sim: httpx.Client) -> None:
    refused = derms_sim.post(
        "/_sim/send/device-reservation",
        data={"message": json.dumps(RESERVATION)},
        files={"file": ("r.csv", b"recordId\n", "text/csv")},
    )

    assert refused.status_code == 409
    assert "without a hub" in refused.text
