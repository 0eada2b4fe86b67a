"""Flows 7 and 8 through the hub's HTTP API: the file kept in segments, sent by a worker,
acknowledged once, against the simulators and an SMTP sink on loopback."""

from __future__ import annotations

import asyncio
import csv
import json
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from derms_bridge.api.app import create_app
from derms_bridge.bootstrap import Hub, build_hub
from derms_bridge.engine.file_jobs.csv_cutter import HEADER_BYTES, LINE_BYTES
from derms_bridge.flows.event_device_outcome import to_post_event_outcome
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.cpmcs_sim import RESERVE_DEVICE_PATH
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.schemas.event_device_outcome import OutcomeMessage
from derms_bridge.settings import SegmentRetry, Segments, Settings
from derms_bridge.settings.connections import Caller
from derms_bridge.store.tables import FileJobRow
from tests.conftest import DERMS_AUTH, OPERATOR_AUTH, cheap_hash, empty_tables, hub_settings
from tests.csv_files import (
    OUTCOME_HEADER,
    Corruption,
    outcome_rows,
    write_outcome_csv,
    write_reservation_csv,
)
from tests.multipart import CONTENT_TYPE, END, Part, multipart_body, streamed_body

RESERVATION = "/device-reservation-to-dacs"
OUTCOME = "/device-outcome-to-dacs"
HEALTH_CHECK = "/rest/apis/common/healthCheck"


class FileHub:
    """The hub with small segments, one at a time and never tried again so that a failure
    lands where a test puts it, and a worker the test runs step by step."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient) -> None:
        self.hub = hub
        self.client = client

    async def send(
        self, route: str, message: dict[str, Any], csv_file: Path | bytes
    ) -> httpx.Response:
        content = csv_file if isinstance(csv_file, bytes) else csv_file.read_bytes()
        return await self.client.post(
            route,
            data={"message": json.dumps(message)},
            files={"file": ("devices.csv", content, "text/csv")},
            auth=DERMS_AUTH,
        )

    async def post(self, route: str, body: bytes | AsyncIterator[bytes]) -> httpx.Response:
        """A multipart body the test built, as it stands."""
        return await self.client.post(
            route, content=body, headers={"Content-Type": CONTENT_TYPE}, auth=DERMS_AUTH
        )

    async def instances(self) -> int:
        listed = await self.client.get("/ops/instances", auth=OPERATOR_AUTH)
        total: int = listed.json()["total"]
        return total

    async def drain(self) -> None:
        """Run the worker until no work is left, as a hub process's worker would."""
        while await self.hub.workers.worker.step():
            pass

    async def detail(self, instance_id: str) -> dict[str, Any]:
        found = await self.client.get(f"/ops/instances/{instance_id}", auth=OPERATOR_AUTH)
        assert found.status_code == 200
        detail: dict[str, Any] = found.json()
        return detail


@asynccontextmanager
async def serving_files(settings: Settings, lookups: Lookups) -> AsyncIterator[FileHub]:
    built = build_hub(settings, lookups)
    transport = httpx.ASGITransport(app=create_app(built, run_workers=False))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hub.test", timeout=30
    ) as client:
        yield FileHub(built, client)
    await built.aclose()


@pytest.fixture
def files_settings(
    database_url: str,
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    callers: dict[str, Caller],
) -> Settings:
    """Settings of a hub with small segments, on an empty database."""
    empty_tables(database_url)
    return hub_settings(
        database_url,
        cpmcs_server.url,
        derms_server.url,
        mailbox,
        callers,
        segments=Segments(
            size=100,
            parallelism=1,
            lease_seconds=30,
            ack_attempts=2,
            retry=SegmentRetry(attempts=1),
        ),
    )


@pytest.fixture
async def files_hub(files_settings: Settings, default_lookups: Lookups) -> AsyncIterator[FileHub]:
    async with serving_files(files_settings, default_lookups) as files_hub:
        yield files_hub


def reservation(message_id: str = "RSV-1") -> dict[str, Any]:
    return {
        "drmsInstanceId": "DRMS-7",
        "messageId": message_id,
        "eventId": "EV-1",
        "stageId": "ST-1",
        "eventType": "ECONOMIC",
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
    }


def acks(derms_sim: httpx.Client, route: str = "/device-reservation-ack") -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = derms_sim.get("/_sim/state/received").json().get(route, [])
    return bodies


def only_response(ack: dict[str, Any]) -> dict[str, Any]:
    [response] = ack["MsgAck"]["responses"]["response"]
    assert isinstance(response, dict)
    return response


def reserved(cpmcs_sim: httpx.Client) -> dict[str, Any]:
    summary: dict[str, Any] = cpmcs_sim.get("/_sim/state/reservations/summary").json()
    return summary


async def test_a_file_is_sent_in_segments_and_acknowledged_once(
    files_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    tmp_path: Path,
) -> None:
    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 250)
    )

    assert reply.status_code == 202
    instance_id = reply.json()["instanceId"]
    assert reply.json()["resumed"] is False
    await files_hub.drain()

    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"], summary["calls"]) == (250, 0, 3)
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "SUCCESS"
    assert only_response(ack)["id"] == "RSV-1"
    assert "250 rows in 3 segments" in only_response(ack)["value"]
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["file"]["segments"] == {"pending": 0, "sending": 0, "accepted": 3, "failed": 0}
    assert detail["file"]["rows_sent"] == 250
    operations = [a["operation"] for a in detail["activities"]]
    assert operations == ["healthCheck", *["reserveDevice"] * 3, "deviceReservationAck"]
    [mail] = mailbox.wait_for(1)
    assert mail.rcpt_tos == ("integration-ops@utility.example",)
    assert "complete: SUCCESS" in mail.subject


async def test_a_hub_that_sent_a_file_closes_its_database_thread(
    files_hub: FileHub, tmp_path: Path
) -> None:
    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 250)
    )
    assert reply.status_code == 202
    await files_hub.drain()

    await files_hub.hub.aclose()

    # On SQLite the worker's rounds run on a thread kept for them; PostgreSQL needs none.
    assert [t.name for t in threading.enumerate() if t.name.startswith("sqlite-side")] == []


async def test_cpmcs_receives_the_mapped_devices(
    files_hub: FileHub, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    await files_hub.send(RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 3))
    await files_hub.drain()

    [device, *_] = cpmcs_sim.get("/_sim/state/reservations", params={"eventId": "EV-1"}).json()
    assert device["eventExternalIdentifier"] == "EV-1"
    assert device["eventStartDateTime"] == "2026-12-01T14:00:00Z"
    assert device["nicId"].startswith("NIC-")
    assert device["headEndSystem"] == "ECOBEE"
    assert device["reservationStartDateTime"].endswith("Z")


async def test_bad_rows_are_set_aside_and_every_other_row_is_sent(
    files_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    tmp_path: Path,
) -> None:
    corrupt = {5: Corruption.BAD_TIMESTAMP, 9: Corruption.LONG_NIC_ID}
    csv_file = write_reservation_csv(tmp_path / "r.csv", 150, corrupt=corrupt)

    reply = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()

    assert reply.status_code == 202
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"], summary["calls"]) == (148, 0, 2)
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "ERROR"
    responses = ack["MsgAck"]["responses"]["response"]
    assert [(r["id"], r["responseCode"]) for r in responses] == [
        ("RSV-1", "ERROR"),
        ("5", "ERROR"),
        ("9", "ERROR"),
    ]
    assert "148 rows in 2 segments taken" in responses[0]["value"]
    assert "2 rows set aside" in responses[0]["value"]
    assert responses[1]["value"].startswith("line 6: reservationStartDateTime:")
    assert responses[2]["value"] == "line 10: nicId: 101 characters, CPMCS takes at most 100"
    instance_id = reply.json()["instanceId"]
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "failed"
    assert detail["error"] == "2 rows set aside"
    assert detail["file"]["outcome"] == "ERROR"
    assert (detail["file"]["rows_sent"], detail["file"]["rows_set_aside"]) == (148, 2)
    assert [(r["line"], r["record_id"]) for r in detail["file"]["set_aside"]] == [
        (6, "5"),
        (10, "9"),
    ]
    mails = mailbox.wait_for(2)
    [complete] = [m for m in mails if "complete: ERROR" in m.subject]
    assert "2 rows set aside:" in complete.body_text
    assert "line 10 (recordId 9): nicId: 101 characters" in complete.body_text

    download = await files_hub.client.get(
        f"/ops/instances/{instance_id}/set-aside.csv", auth=OPERATOR_AUTH
    )
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    # The rows as they came, each line ending in a line feed.
    lines = csv_file.read_bytes().replace(b"\r\n", b"\n").splitlines(keepends=True)
    assert download.content == lines[0] + lines[5] + lines[9]


async def test_a_resend_of_a_file_with_rows_set_aside_sends_only_its_acknowledgement_again(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 30, corrupt={3: Corruption.LONG_NIC_ID})
    first = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()

    again = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()

    assert again.json() == {
        "instanceId": first.json()["instanceId"],
        "resumed": False,
        "acknowledgedAgain": True,
    }
    assert reserved(cpmcs_sim)["calls"] == 1
    first_ack, second_ack = acks(derms_sim)
    assert first_ack == second_ack
    assert first_ack["MsgAck"]["ackType"] == "ERROR"


async def test_a_file_whose_every_row_is_set_aside_is_an_error(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    corrupt = dict.fromkeys(range(1, 4), Corruption.MISSING_COLUMN)
    csv_file = write_reservation_csv(tmp_path / "r.csv", 3, corrupt=corrupt)

    reply = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()

    assert reserved(cpmcs_sim)["calls"] == 0
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "ERROR"
    responses = ack["MsgAck"]["responses"]["response"]
    assert responses[0]["value"] == "no row to send: 3 rows set aside"
    assert [r["id"] for r in responses[1:]] == ["1", "2", "3"]
    download = await files_hub.client.get(
        f"/ops/instances/{reply.json()['instanceId']}/set-aside.csv", auth=OPERATOR_AUTH
    )
    assert download.content == csv_file.read_bytes().replace(b"\r\n", b"\n")


async def test_an_empty_file_is_an_error(
    files_hub: FileHub, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    await files_hub.send(RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 0))
    await files_hub.drain()

    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "ERROR"
    assert only_response(ack)["value"] == "no row to send: the file has none"


async def test_a_reservation_time_in_another_offset_goes_in_utc_and_an_empty_one_is_left_out(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client
) -> None:
    content = (
        b"recordId,nicId,headEndSystemId,reservationStartDateTime,reservationEndDateTime\n"
        b"1,NIC-1,ECOBEE,2026-12-01T16:00:00+02:00,\n"
    )
    await files_hub.send(RESERVATION, reservation(), content)
    await files_hub.drain()

    [device] = cpmcs_sim.get("/_sim/state/reservations", params={"eventId": "EV-1"}).json()
    assert device["reservationStartDateTime"] == "2026-12-01T14:00:00Z"
    assert "reservationEndDateTime" not in device
    assert [a["MsgAck"]["ackType"] for a in acks(derms_sim)] == ["SUCCESS"]


async def test_the_set_aside_rows_of_an_instance_that_is_not_a_files_are_not_found(
    files_hub: FileHub,
) -> None:
    found = await files_hub.client.get("/ops/instances/nope/set-aside.csv", auth=OPERATOR_AUTH)
    assert found.status_code == 404


async def test_devices_reserved_again_are_cpmcs_s_to_dos_and_the_file_succeeds(
    files_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    tmp_path: Path,
) -> None:
    # DERMS reserves the stage's devices again with more of them: CPMCS raises no business
    # fault for a device it holds already, but a To-Do (flow 7 of the reference).
    for message_id, rows in (("RSV-1", 150), ("RSV-2", 250)):
        csv_file = write_reservation_csv(tmp_path / f"{message_id}.csv", rows)
        assert (await files_hub.send(RESERVATION, reservation(message_id), csv_file)).is_success
        await files_hub.drain()

    first, second = acks(derms_sim)
    assert [ack["MsgAck"]["ackType"] for ack in (first, second)] == ["SUCCESS", "SUCCESS"]
    assert only_response(second)["value"].startswith("250 rows in 3 segments taken by CPMCS")
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"]) == (250, 150)
    to_dos = cpmcs_sim.get("/_sim/state/to-dos").json()
    assert [(t["eventExternalIdentifier"], t["deviceCount"]) for t in to_dos] == [
        ("EV-1", 100),
        ("EV-1", 50),
    ]
    assert len(mailbox.wait_for(2)) == 2
    assert all("complete: SUCCESS" in mail.subject for mail in mailbox.messages())


async def test_cpmcs_down_at_the_health_check_sends_nothing(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 503, "fail_calls": [1], "fail_calls_path": HEALTH_CHECK},
    ).raise_for_status()

    await files_hub.send(RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 50))
    await files_hub.drain()

    assert reserved(cpmcs_sim)["received"] == 0
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "FAILURE"
    assert "health check failed" in only_response(ack)["value"]


async def test_a_failed_segment_stops_the_rest_and_a_resend_completes_the_file(
    files_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    mailbox: SmtpSink,
    tmp_path: Path,
) -> None:
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 500, "fail_calls": [2], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "r.csv", 500)

    first = await files_hub.send(RESERVATION, reservation("RSV-9"), csv_file)
    await files_hub.drain()

    instance_id = first.json()["instanceId"]
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "failed"
    assert detail["file"]["segments"] == {"pending": 3, "sending": 0, "accepted": 1, "failed": 1}
    assert "segment 2 (from line 102)" in detail["file"]["segment_errors"][0]
    [failure] = acks(derms_sim)
    assert failure["MsgAck"]["ackType"] == "FAILURE"
    assert "HTTP 500" in only_response(failure)["value"]
    assert len(mailbox.wait_for(2)) == 2
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    again = await files_hub.send(RESERVATION, reservation("RSV-9"), csv_file)
    await files_hub.drain()

    assert again.json() == {"instanceId": instance_id, "resumed": True, "acknowledgedAgain": False}
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"]) == (500, 0)
    assert [a["MsgAck"]["ackType"] for a in acks(derms_sim)] == ["FAILURE", "SUCCESS"]
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["attempts"] == 2
    assert detail["file"]["run"] == 2
    assert detail["file"]["rows_sent"] == 500


async def test_a_resend_that_comes_while_the_failure_is_still_being_acknowledged_resumes_the_file(
    files_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 500, "fail_calls": [2], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "r.csv", 500)
    first = await files_hub.send(RESERVATION, reservation("RSV-ACKING"), csv_file)
    await files_hub.drain()
    instance_id = first.json()["instanceId"]
    # DERMS has the FAILURE acknowledgement and resends at once, while the worker that sent
    # it has not yet recorded it: the job is still its, acknowledging.
    async with files_hub.hub.store.engine.begin() as connection:
        await connection.execute(
            update(FileJobRow)
            .where(FileJobRow.instance_id == instance_id)
            .values(
                state="acking",
                owner="a-worker-recording-its-acknowledgement",
                lease_until=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
    cpmcs_sim.delete("/_sim/faults").raise_for_status()

    again = await files_hub.send(RESERVATION, reservation("RSV-ACKING"), csv_file)
    await files_hub.drain()

    assert again.json() == {"instanceId": instance_id, "resumed": True, "acknowledgedAgain": False}
    assert [a["MsgAck"]["ackType"] for a in acks(derms_sim)] == ["FAILURE", "SUCCESS"]
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"]) == (500, 0)
    detail = await files_hub.detail(instance_id)
    assert (detail["status"], detail["file"]["run"]) == ("succeeded", 2)


def with_segments(settings: Settings, **segments: Any) -> Settings:
    return settings.model_copy(update={"segments": settings.segments.model_copy(update=segments)})


def reserve_device_calls(cpmcs_sim: httpx.Client) -> int:
    """reserveDevice calls that reached CPMCS, those it failed included."""
    calls: dict[str, int] = cpmcs_sim.get("/_sim/state/calls").json()
    return calls.get(RESERVE_DEVICE_PATH, 0)


def reserve_device_statuses(detail: dict[str, Any]) -> list[int | None]:
    return [a["http_status"] for a in detail["activities"] if a["operation"] == "reserveDevice"]


async def test_segments_cpmcs_fails_now_and_then_are_tried_again_and_the_file_succeeds(
    files_settings: Settings,
    default_lookups: Lookups,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    # A seeded 5% of reserveDevice calls fail with 500, the health check never; the
    # segments are tried again as the defaults say, four in flight.
    settings = with_segments(files_settings, size=20, parallelism=4, retry=SegmentRetry())
    cpmcs_sim.put(
        "/_sim/faults",
        json={"error_rate": 0.05, "error_seed": 12, "error_rate_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    rows, segments = 3000, 150

    async with serving_files(settings, default_lookups) as files_hub:
        reply = await files_hub.send(
            RESERVATION, reservation("RSV-RETRY"), write_reservation_csv(tmp_path / "r.csv", rows)
        )
        await files_hub.drain()
        detail = await files_hub.detail(reply.json()["instanceId"])

    failed_calls = reserve_device_calls(cpmcs_sim) - segments
    assert failed_calls > 0, "no call failed: the test shows nothing"
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"], summary["calls"]) == (rows, 0, segments)
    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "SUCCESS", ack
    assert only_response(ack)["value"] == (
        f"{rows} rows in {segments} segments taken by CPMCS reserveDevice (run 1); "
        "0 segments sent more than once"
    )
    assert detail["status"] == "succeeded"
    assert detail["file"]["segments"]["accepted"] == segments
    assert detail["file"]["segments_sent_again"] == 0
    statuses = reserve_device_statuses(detail)
    assert (statuses.count(500), statuses.count(200)) == (failed_calls, segments)


async def test_a_segment_failing_every_try_fails_the_file_after_retry_attempts(
    files_settings: Settings,
    default_lookups: Lookups,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    settings = with_segments(files_settings, retry=SegmentRetry(attempts=3))
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 503, "fail_calls": [2, 3, 4], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()

    async with serving_files(settings, default_lookups) as files_hub:
        reply = await files_hub.send(
            RESERVATION, reservation("RSV-GIVE-UP"), write_reservation_csv(tmp_path / "r.csv", 300)
        )
        await files_hub.drain()
        detail = await files_hub.detail(reply.json()["instanceId"])

    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "FAILURE"
    assert only_response(ack)["value"] == (
        "segment 2 (100 rows from line 102): CPMCS answered HTTP 503 to reserveDevice (3 tries)"
    )
    assert detail["status"] == "failed"
    assert detail["file"]["segments"] == {"pending": 1, "sending": 0, "accepted": 1, "failed": 1}
    assert reserve_device_statuses(detail) == [200, 503, 503, 503]


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_segment_cpmcs_refuses_with_a_4xx_is_not_tried_again(
    files_settings: Settings,
    default_lookups: Lookups,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    tmp_path: Path,
    status: int,
) -> None:
    settings = with_segments(files_settings, retry=SegmentRetry())
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": status, "fail_calls": [2], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()

    async with serving_files(settings, default_lookups) as files_hub:
        reply = await files_hub.send(
            RESERVATION, reservation("RSV-4XX"), write_reservation_csv(tmp_path / "r.csv", 300)
        )
        await files_hub.drain()
        detail = await files_hub.detail(reply.json()["instanceId"])

    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "FAILURE"
    assert f"HTTP {status}" in only_response(ack)["value"]
    assert "tries" not in only_response(ack)["value"]
    assert reserve_device_calls(cpmcs_sim) == 2
    assert reserve_device_statuses(detail) == [200, status]


async def test_resubmit_sends_only_what_cpmcs_has_not_taken(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 503, "fail_calls": [3], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 300)
    )
    await files_hub.drain()
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    instance_id = reply.json()["instanceId"]

    resubmitted = await files_hub.client.post(
        f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH
    )
    await files_hub.drain()

    assert resubmitted.status_code == 200
    assert resubmitted.json()["id"] == instance_id
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"], summary["calls"]) == (300, 0, 3)
    assert [a["MsgAck"]["ackType"] for a in acks(derms_sim)] == ["FAILURE", "SUCCESS"]
    again = await files_hub.client.post(
        f"/ops/instances/{instance_id}/resubmit", auth=OPERATOR_AUTH
    )
    assert again.status_code == 409


async def test_an_ack_derms_will_not_take_is_retried_then_emailed(
    files_hub: FileHub, derms_sim: httpx.Client, mailbox: SmtpSink, tmp_path: Path
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()

    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 10)
    )
    await files_hub.drain()

    detail = await files_hub.detail(reply.json()["instanceId"])
    assert detail["status"] == "failed"
    assert "did not accept the acknowledgement after 2 tries" in detail["error"]
    ack_calls = [a for a in detail["activities"] if a["operation"] == "deviceReservationAck"]
    assert [a["http_status"] for a in ack_calls] == [500, 500]
    assert any("did not accept" in m.body_text for m in mailbox.wait_for(2))


async def test_a_resend_of_a_completed_file_sends_its_acknowledgement_again_and_no_row(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 250)
    first = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()
    instance_id = first.json()["instanceId"]

    again = await files_hub.send(RESERVATION, reservation(), csv_file)
    await files_hub.drain()

    assert again.status_code == 202
    assert again.json() == {"instanceId": instance_id, "resumed": False, "acknowledgedAgain": True}
    summary = reserved(cpmcs_sim)
    assert (summary["devices"], summary["duplicates"], summary["calls"]) == (250, 0, 3)
    original, resent = acks(derms_sim)
    assert resent == original
    assert original["MsgAck"]["ackType"] == "SUCCESS"
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["file"]["run"] == 1
    operations = [a["operation"] for a in detail["activities"]]
    assert operations == ["healthCheck", *["reserveDevice"] * 3, *["deviceReservationAck"] * 2]
    assert await files_hub.instances() == 1


async def test_an_operator_sends_a_lost_acknowledgement_again(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    derms_sim.put("/_sim/faults", json={"status_code": 500}).raise_for_status()
    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 10)
    )
    await files_hub.drain()
    instance_id = reply.json()["instanceId"]
    assert (await files_hub.detail(instance_id))["status"] == "failed"
    derms_sim.delete("/_sim/faults").raise_for_status()

    asked = await files_hub.client.post(
        f"/ops/instances/{instance_id}/acknowledgement", auth=OPERATOR_AUTH
    )
    assert asked.status_code == 202
    assert asked.json()["file"]["state"] == "acking_again"
    await files_hub.drain()

    [ack] = acks(derms_sim)
    assert ack["MsgAck"]["ackType"] == "SUCCESS"
    assert "10 rows in 1 segments" in only_response(ack)["value"]
    assert reserved(cpmcs_sim)["calls"] == 1
    detail = await files_hub.detail(instance_id)
    assert detail["status"] == "succeeded"
    assert detail["error"] is None
    ack_calls = [a for a in detail["activities"] if a["operation"] == "deviceReservationAck"]
    assert [a["http_status"] for a in ack_calls] == [500, 500, 200]


async def test_an_acknowledgement_is_sent_again_only_for_a_finished_file_run(
    files_hub: FileHub, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    reply = await files_hub.send(
        RESERVATION, reservation(), write_reservation_csv(tmp_path / "r.csv", 10)
    )
    instance_id = reply.json()["instanceId"]

    unfinished = await files_hub.client.post(
        f"/ops/instances/{instance_id}/acknowledgement", auth=OPERATOR_AUTH
    )
    unknown = await files_hub.client.post(
        "/ops/instances/no-such-instance/acknowledgement", auth=OPERATOR_AUTH
    )
    by_derms = await files_hub.client.post(
        f"/ops/instances/{instance_id}/acknowledgement", auth=DERMS_AUTH
    )
    await files_hub.drain()

    assert unfinished.status_code == 409
    assert unfinished.headers["content-type"] == "application/problem+json"
    assert "not finished" in unfinished.json()["detail"]
    assert unknown.status_code == 404
    assert by_derms.status_code == 401
    assert len(acks(derms_sim)) == 1


@pytest.fixture(scope="module")
def north_derms_server() -> Iterator[ServerThread]:
    with ServerThread(create_derms_app(seed=3), name="DERMS north simulator") as server:
        yield server


@pytest.fixture
def north_derms_sim(north_derms_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=north_derms_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        yield client


NORTH_AUTH = ("derms-north", "derms-north-test-pw")


@pytest.fixture
async def two_derms_hub(
    files_settings: Settings,
    north_derms_server: ServerThread,
    north_derms_sim: httpx.Client,
    default_lookups: Lookups,
) -> AsyncIterator[FileHub]:
    """The hub with a second DERMS, `north`, whose caller `derms-north` sends files."""
    connections = files_settings.connections
    north = {**connections.derms["default"].model_dump(), "base_url": north_derms_server.url}
    settings = Settings.model_validate(
        {
            **files_settings.model_dump(),
            "connections": {
                "cpmcs": connections.cpmcs.model_dump(),
                "derms": {**connections.model_dump()["derms"], "north": north},
            },
            "callers": {
                **{name: caller.model_dump() for name, caller in files_settings.callers.items()},
                "derms-north": Caller(
                    role="derms",
                    username=NORTH_AUTH[0],
                    password_hash=cheap_hash(NORTH_AUTH[1]),
                    derms_connection="north",
                ).model_dump(),
            },
        }
    )
    async with serving_files(settings, default_lookups) as files_hub:
        yield files_hub


async def test_each_files_acknowledgement_goes_back_to_the_derms_that_sent_it(
    two_derms_hub: FileHub,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    north_derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    cpmcs_sim.put(
        "/_sim/faults",
        json={"status_code": 500, "fail_calls": [2], "fail_calls_path": RESERVE_DEVICE_PATH},
    ).raise_for_status()
    csv_file = write_reservation_csv(tmp_path / "r.csv", 250)
    north = await two_derms_hub.client.post(
        RESERVATION,
        data={"message": json.dumps(reservation("RSV-NORTH"))},
        files={"file": ("devices.csv", csv_file.read_bytes(), "text/csv")},
        auth=NORTH_AUTH,
    )
    await two_derms_hub.drain()
    cpmcs_sim.delete("/_sim/faults").raise_for_status()
    default = await two_derms_hub.send(RESERVATION, reservation("RSV-DEFAULT"), csv_file)
    await two_derms_hub.drain()
    north_id, default_id = north.json()["instanceId"], default.json()["instanceId"]

    # Whoever asks, the resumed run and the acknowledgement sent again go where the file
    # came from.
    resubmitted = await two_derms_hub.client.post(
        f"/ops/instances/{north_id}/resubmit", auth=OPERATOR_AUTH
    )
    asked = await two_derms_hub.client.post(
        f"/ops/instances/{default_id}/acknowledgement", auth=OPERATOR_AUTH
    )
    await two_derms_hub.drain()

    assert (resubmitted.status_code, asked.status_code) == (200, 202)
    north_acks = [(only_response(a)["id"], a["MsgAck"]["ackType"]) for a in acks(north_derms_sim)]
    default_acks = [(only_response(a)["id"], a["MsgAck"]["ackType"]) for a in acks(derms_sim)]
    assert north_acks == [("RSV-NORTH", "FAILURE"), ("RSV-NORTH", "SUCCESS")]
    assert default_acks == [("RSV-DEFAULT", "SUCCESS"), ("RSV-DEFAULT", "SUCCESS")]
    assert (await two_derms_hub.detail(north_id))["file"]["derms_connection"] == "north"
    assert (await two_derms_hub.detail(default_id))["file"]["derms_connection"] == "default"


async def test_outcomes_of_several_events_go_through_the_event_outcome_lookup(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    csv_file = write_outcome_csv(tmp_path / "o.csv", 120, event_ids=("EV-1", "EV-2"))

    reply = await files_hub.send(
        OUTCOME, {"messageId": "OUT-1", "fileName": "outcomes.csv"}, csv_file
    )
    await files_hub.drain()

    assert reply.status_code == 202
    summary = cpmcs_sim.get("/_sim/state/outcomes/summary").json()
    assert summary["devices"] == 120
    assert set(summary["events"]) == {"EV-1", "EV-2"}
    kept = cpmcs_sim.get("/_sim/state/outcomes", params={"eventId": "EV-1"}).json()
    assert {o["outcome"] for o in kept} <= {"D1SP", "D1IO", "D1ND", "D1ER", "D1CN"}
    [ack] = acks(derms_sim, "/device-outcome-ack")
    assert ack["MsgAck"]["ackType"] == "SUCCESS"
    found = await files_hub.client.get(
        "/ops/instances", params={"key": "outcomes.csv"}, auth=OPERATOR_AUTH
    )
    assert [i["id"] for i in found.json()["items"]] == [reply.json()["instanceId"]]


async def test_cpmcs_receives_each_outcome_as_its_row_says(
    files_hub: FileHub, cpmcs_sim: httpx.Client, default_lookups: Lookups
) -> None:
    lines = [",".join(row) for row in outcome_rows(250, event_ids=("EV-1", "EV-2", "EV-3"))]
    # Rows of text that is not plain: the csv module reads the file from the first of them.
    lines[149] = lines[149].rpartition(",")[0] + ',"Timed out, retried"'
    lines[199] = lines[199].rpartition(",")[0] + ",Échec de la commande"
    content = "\r\n".join([",".join(OUTCOME_HEADER), *lines, ""]).encode()
    message = {"messageId": "OUT-3", "fileName": "outcomes.csv"}

    reply = await files_hub.send(OUTCOME, message, content)
    await files_hub.drain()

    assert reply.status_code == 202
    expected = to_post_event_outcome(
        OutcomeMessage.model_validate(message), list(csv.reader(lines)), default_lookups
    )["postOutcomeList"]
    kept = cpmcs_sim.get("/_sim/state/outcomes", params={"limit": 1000}).json()
    assert [{k: v for k, v in o.items() if k != "timesReceived"} for o in kept] == expected
    assert sum("errorMessage" in device for device in expected) == 52


async def test_an_unknown_outcome_sets_its_row_aside_and_a_long_error_message_is_cut(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client, tmp_path: Path
) -> None:
    corrupt = {4: Corruption.UNKNOWN_OUTCOME, 9: Corruption.LONG_ERROR_MESSAGE}
    csv_file = write_outcome_csv(tmp_path / "o.csv", 20, corrupt=corrupt)

    await files_hub.send(OUTCOME, {"messageId": "OUT-2"}, csv_file)
    await files_hub.drain()

    [ack] = acks(derms_sim, "/device-outcome-ack")
    assert ack["MsgAck"]["ackType"] == "ERROR"
    [_file, unknown] = ack["MsgAck"]["responses"]["response"]
    assert unknown["id"] == "4"
    assert unknown["value"].startswith("line 5: outcome: lookup OUTL-BRT-DACS_DRMS_EventOutcome")
    kept = cpmcs_sim.get("/_sim/state/outcomes", params={"limit": 1000}).json()
    assert sorted(int(o["nicId"].removeprefix("NIC-")) for o in kept) == [
        n for n in range(1, 21) if n != 4
    ]
    [cut] = [o for o in kept if o["nicId"] == "NIC-000009"]
    assert len(cut["errorMessage"]) == 100
    assert cut["errorMessage"].endswith("...")


async def kept_as_rejected_only(files_hub: FileHub, count: int = 1) -> None:
    """Each refused message is a rejected instance, and nothing of its file is kept."""
    listed = (await files_hub.client.get("/ops/instances", auth=OPERATOR_AUTH)).json()
    assert [item["status"] for item in listed["items"]] == ["rejected"] * count
    for item in listed["items"]:
        assert (await files_hub.detail(item["id"]))["file"] is None


@pytest.mark.parametrize(
    ("message", "content", "field"),
    [
        ({"messageId": "X"}, b"recordId,nicId\n1,N\n", "message.eventId"),
        (reservation(), b"recordId,nicId,headEndSystemId\n1,N,E\n", "file"),
        (reservation(), b"", "file"),
    ],
)
async def test_a_bad_message_or_header_is_a_422_and_kept_as_rejected_only(
    files_hub: FileHub, message: dict[str, Any], content: bytes, field: str
) -> None:
    reply = await files_hub.send(RESERVATION, message, content)

    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in reply.json()["errors"]]
    await kept_as_rejected_only(files_hub)


async def endless_line_body(head: bytes, tail: bytes) -> AsyncIterator[bytes]:
    """A reservation file part of `head`, a line of 32 MiB that has no end, and `tail`."""
    yield message_part().head() + message_part().content + b"\r\n"
    yield Part("file", filename="devices.csv").head() + head
    filler = b"7" * (1024 * 1024)
    for _ in range(32):
        yield filler
    yield tail + b"\r\n" + END


async def test_a_header_with_no_line_end_is_a_422_naming_it(files_hub: FileHub) -> None:
    reply = await files_hub.post(RESERVATION, endless_line_body(b"recordId,", b"\n1,N,E,,\n"))

    assert reply.status_code == 422
    assert reply.json()["errors"] == [
        {"field": "file", "message": f"the header, its first line, runs past {HEADER_BYTES} bytes"}
    ]
    await kept_as_rejected_only(files_hub)


async def test_a_row_with_no_line_end_is_set_aside_and_the_rows_after_it_go(
    files_hub: FileHub, cpmcs_sim: httpx.Client, derms_sim: httpx.Client
) -> None:
    header = ONE_ROW_CSV.splitlines()[0]
    rows = b"".join(
        b"%d,NIC-%d,ECOBEE,2026-12-01T14:00:00Z,2026-12-01T18:00:00Z\n" % (n, n) for n in (1, 2, 3)
    )
    body = endless_line_body(header + b"\n9,NIC-9,", b"\n" + rows)

    tracemalloc.start()
    try:
        reply = await files_hub.post(RESERVATION, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await files_hub.drain()

    assert reply.status_code == 202, reply.text
    assert peak < 16 * 1024 * 1024, f"{peak} bytes at most"
    assert reserved(cpmcs_sim)["devices"] == 3
    [ack] = acks(derms_sim)
    responses = ack["MsgAck"]["responses"]["response"]
    assert [(r["id"], r["value"]) for r in responses[1:]] == [
        ("line 2", f"line 2: a line longer than {LINE_BYTES} bytes (its first {LINE_BYTES} kept)")
    ]


async def test_json_instead_of_multipart_is_a_415(files_hub: FileHub) -> None:
    reply = await files_hub.client.post(RESERVATION, json=reservation(), auth=DERMS_AUTH)

    assert reply.status_code == 415


async def test_only_derms_may_send_a_file(files_hub: FileHub, tmp_path: Path) -> None:
    reply = await files_hub.client.post(
        RESERVATION,
        data={"message": json.dumps(reservation())},
        files={"file": ("r.csv", write_reservation_csv(tmp_path / "r.csv", 1).read_bytes())},
        auth=OPERATOR_AUTH,
    )

    assert reply.status_code == 401


ONE_ROW_CSV = (
    b"recordId,nicId,headEndSystemId,reservationStartDateTime,reservationEndDateTime\r\n"
    b"1,NIC-1,ECOBEE,2026-12-01T14:00:00Z,2026-12-01T18:00:00Z\r\n"
)


def message_part(message_id: str = "RSV-1") -> Part:
    return Part("message", json.dumps(reservation(message_id)).encode())


async def test_a_file_sent_before_its_message_is_kept(files_hub: FileHub, tmp_path: Path) -> None:
    # More than the hub keeps in memory while it waits for the message.
    csv_file = write_reservation_csv(tmp_path / "r.csv", 20_000)
    assert csv_file.stat().st_size > 1024 * 1024

    reply = await files_hub.post(
        RESERVATION,
        multipart_body(Part("file", csv_file.read_bytes(), "devices.csv"), message_part()),
    )

    assert reply.status_code == 202, reply.text
    kept = (await files_hub.detail(reply.json()["instanceId"]))["file"]
    assert kept["total_rows"] == 20_000
    assert kept["segments"]["pending"] == 200


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ((Part("file", ONE_ROW_CSV, "d.csv"),), "message"),
        ((message_part(),), "file"),
        ((message_part(), Part("file", ONE_ROW_CSV)), "file"),
        ((message_part(), Part("file", ONE_ROW_CSV, "d.csv"), message_part("RSV-2")), "message"),
        (
            (message_part(), Part("file", ONE_ROW_CSV, "d.csv"), Part("file", b"x", "e.csv")),
            "file",
        ),
    ],
    ids=["no message", "no file", "file as a field", "two messages", "two files"],
)
async def test_a_part_missing_repeated_or_not_a_file_is_a_422_naming_it(
    files_hub: FileHub, parts: tuple[Part, ...], field: str
) -> None:
    reply = await files_hub.post(RESERVATION, multipart_body(*parts))

    assert reply.status_code == 422
    assert [error["field"] for error in reply.json()["errors"]] == [field]
    await kept_as_rejected_only(files_hub)


async def test_a_body_that_is_not_multipart_is_a_400(files_hub: FileHub) -> None:
    reply = await files_hub.post(RESERVATION, b"a,b\r\n1,2\r\n")

    assert reply.status_code == 400
    await kept_as_rejected_only(files_hub)


async def test_a_body_that_breaks_off_keeps_no_file(files_hub: FileHub, tmp_path: Path) -> None:
    # Long enough that segments are cut, and written, before the body breaks off.
    csv_file = write_reservation_csv(tmp_path / "r.csv", 30_000)
    whole = multipart_body(message_part(), Part("file", csv_file.read_bytes(), "devices.csv"))

    cut_short = await files_hub.post(RESERVATION, whole[: len(whole) * 3 // 4])

    assert cut_short.status_code == 422
    assert [error["field"] for error in cut_short.json()["errors"]] == ["file"]
    await kept_as_rejected_only(files_hub)
    # Sent whole, the same message is a new file, not the resend of one kept.
    sent_whole = await files_hub.post(RESERVATION, whole)
    assert sent_whole.status_code == 202
    assert sent_whole.json()["resumed"] is False
    kept = (await files_hub.detail(sent_whole.json()["instanceId"]))["file"]
    assert kept["total_rows"] == 30_000


async def test_a_body_over_the_limit_is_a_413_and_kept_as_rejected_only(
    files_settings: Settings, default_lookups: Lookups, tmp_path: Path
) -> None:
    # Over the megabyte the intake reads before it cuts: segments are cut, and written,
    # before the limit is met.
    limit = 2 * 1024 * 1024
    limited = files_settings.model_copy(
        update={"segments": Segments(size=100, parallelism=1, max_file_bytes=limit)}
    )
    csv_file = write_reservation_csv(tmp_path / "r.csv", 50_000)
    assert csv_file.stat().st_size > limit
    file_part = Part("file", filename="devices.csv")
    async with serving_files(limited, default_lookups) as files_hub:
        declared = await files_hub.post(
            RESERVATION,
            multipart_body(message_part(), Part("file", csv_file.read_bytes(), "devices.csv")),
        )
        # Streamed without a Content-Length, the limit is met while the file is read.
        streamed = await files_hub.post(
            RESERVATION, streamed_body([message_part()], file_part, csv_file)
        )
        file_first = await files_hub.post(
            RESERVATION, streamed_body([], file_part, csv_file, after=[message_part()])
        )

        assert [declared.status_code, streamed.status_code, file_first.status_code] == [413] * 3
        assert f"limit of {limit} bytes" in streamed.json()["detail"]
        await kept_as_rejected_only(files_hub, 3)


async def test_a_large_file_is_taken_in_constant_memory(files_hub: FileHub, tmp_path: Path) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 300_000)
    body = streamed_body([message_part()], Part("file", filename="devices.csv"), csv_file)

    tracemalloc.start()
    try:
        reply = await files_hub.post(RESERVATION, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert reply.status_code == 202
    assert (await files_hub.detail(reply.json()["instanceId"]))["file"]["total_rows"] == 300_000
    # The file went through a few megabytes at a time, never whole, nor spooled.
    assert peak < csv_file.stat().st_size / 2


async def test_a_slow_upload_holds_up_no_other(files_hub: FileHub, tmp_path: Path) -> None:
    slow_file = write_reservation_csv(tmp_path / "slow.csv", 60_000)
    quick_file = write_reservation_csv(tmp_path / "quick.csv", 10)
    slow_body = multipart_body(
        message_part("RSV-SLOW"), Part("file", slow_file.read_bytes(), "s.csv")
    )
    half = len(slow_body) // 2
    rest_may_come = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        # More than the intake reads before it cuts: the slow file is being kept.
        yield slow_body[:half]
        await rest_may_come.wait()
        yield slow_body[half:]

    slow = asyncio.create_task(files_hub.post(RESERVATION, slowly()))
    try:
        # Bounded so that a hub that keeps the quick file waiting fails here, not hangs.
        quick = await asyncio.wait_for(
            files_hub.send(RESERVATION, reservation("RSV-QUICK"), quick_file), timeout=30
        )
    finally:
        rest_may_come.set()

    assert quick.status_code == 202
    assert (await slow).status_code == 202
    assert await files_hub.instances() == 2


async def test_the_event_times_go_as_cpmcs_takes_them_whatever_iso_form_came(
    files_hub: FileHub, cpmcs_sim: httpx.Client, tmp_path: Path
) -> None:
    message = reservation("RSV-ISO") | {
        "eventStartDateTime": "20261201T140000Z",
        "eventEndDateTime": "2026-W49-2T18:00:00Z",
    }

    reply = await files_hub.send(RESERVATION, message, write_reservation_csv(tmp_path / "r.csv", 3))
    await files_hub.drain()

    assert reply.status_code == 202
    [device, *_] = cpmcs_sim.get("/_sim/state/reservations", params={"eventId": "EV-1"}).json()
    assert (device["eventStartDateTime"], device["eventEndDateTime"]) == (
        "2026-12-01T14:00:00Z",
        "2026-12-01T18:00:00Z",
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Polls `check` for up to 30 s."""
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} within 30 s")


def stopping_soon(settings: Settings, grace_seconds: float) -> Settings:
    """`settings` with two segments at a time and a stop's grace of `grace_seconds`."""
    return settings.model_copy(
        update={
            "segments": settings.segments.model_copy(update={"parallelism": 2}),
            "processes": settings.processes.model_copy(
                update={"stop_grace_seconds": grace_seconds}
            ),
        }
    )


async def test_a_stop_gives_back_the_segments_its_grace_cut_short(
    files_settings: Settings,
    default_lookups: Lookups,
    cpmcs_sim: httpx.Client,
    derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 1000)
    # Each call takes far longer than the grace: the stop cuts the two in flight short.
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 2500}).raise_for_status()
    try:
        async with serving_files(stopping_soon(files_settings, 0.3), default_lookups) as hub:
            sent = await hub.send(RESERVATION, reservation("RSV-CUT"), csv_file)
            instance_id = sent.json()["instanceId"]
            working = asyncio.create_task(hub.drain())

            async def two_in_flight() -> bool:
                calls = cpmcs_sim.get("/_sim/state/calls").json()
                return int(calls.get(RESERVE_DEVICE_PATH, 0)) >= 2

            await until(two_in_flight, "no two segments reached CPMCS")
            hub.hub.shutdown.begin()
            await asyncio.wait_for(working, 4.5)
            detail = await hub.detail(instance_id)
    finally:
        cpmcs_sim.delete("/_sim/faults").raise_for_status()
    # Cut short and given back with those claimed ahead: none waits for its lease.
    assert detail["file"]["segments"] == {"pending": 10, "sending": 0, "accepted": 0, "failed": 0}

    async with serving_files(files_settings, default_lookups) as next_process:
        await next_process.drain()
        detail = await next_process.detail(instance_id)
    assert detail["status"] == "succeeded", detail
    assert reserved(cpmcs_sim)["devices"] == 1000
    assert [ack["MsgAck"]["ackType"] for ack in acks(derms_sim)] == ["SUCCESS"]


async def test_a_stop_gives_back_the_acknowledgement_its_grace_cut_short(
    files_settings: Settings,
    default_lookups: Lookups,
    derms_sim: httpx.Client,
    tmp_path: Path,
) -> None:
    csv_file = write_reservation_csv(tmp_path / "r.csv", 50)
    derms_sim.put("/_sim/faults", json={"latency_ms": 2500}).raise_for_status()
    try:
        async with serving_files(stopping_soon(files_settings, 0.3), default_lookups) as hub:
            sent = await hub.send(RESERVATION, reservation("RSV-CUT-ACK"), csv_file)
            instance_id = sent.json()["instanceId"]
            working = asyncio.create_task(hub.drain())

            async def acknowledging() -> bool:
                state: str = (await hub.detail(instance_id))["file"]["state"]
                return state == "acking"

            await until(acknowledging, "the acknowledgement did not fall due")
            # The acknowledgement is on its way to DERMS.
            await asyncio.sleep(0.5)
            hub.hub.shutdown.begin()
            await asyncio.wait_for(working, 4.5)
            assert (await hub.detail(instance_id))["status"] == "in_progress"
    finally:
        derms_sim.delete("/_sim/faults").raise_for_status()

    # Given back: the next process sends it at once, not after the job's lease.
    async with serving_files(files_settings, default_lookups) as next_process:
        await next_process.drain()
        detail = await next_process.detail(instance_id)
    assert detail["status"] == "succeeded", detail
    assert acks(derms_sim)[-1]["MsgAck"]["ackType"] == "SUCCESS"
