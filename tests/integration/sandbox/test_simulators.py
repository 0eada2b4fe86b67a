"""The simulators, the SMTP sink and the server thread, driven over loopback as the hub would."""

import hashlib
import json
import logging
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from derms_bridge.sandbox.cpmcs_sim import (
    ACKNOWLEDGEMENT_PATH,
    ENROLL_PATH,
    HEALTH_CHECK_PATH,
    POST_EVENT_OUTCOME_PATH,
    PROGRAM_EVENT_LIFECYCLE_PATH,
    PROGRAM_EVENT_PATH,
    RESERVE_DEVICE_PATH,
    SYNC_REQUEST_PATH,
    create_cpmcs_app,
)
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import ServerThread, free_port
from derms_bridge.sandbox.smtp_sink import ReceivedMail, SmtpSink

ISO_UTC_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def enroll_request(transaction_id: str, program_code: str = "BYOT") -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "enrollmentSource": "X1BY",
        "customerInfo": {"cisPersonId": "P-1", "cisAccountId": "A-1", "name": "Ada Lovelace"},
        "programInfo": {
            "cisServiceAgreementId": "SA-1",
            "programCode": program_code,
            "startDate": "2026-12-01",
            "endDate": "2027-12-01",
        },
        "locationInfo": {"division": "NORTH", "cisPremiseId": "PR-1", "timeZone": "UTC"},
        "assetInfo": {
            "installationMethod": "SELF",
            "assetOwnership": "W1CO",
            "assetList": [{"sequence": 1, "assetId": "AS-1", "specification": "X1ECOBEE5"}],
        },
    }


@pytest.fixture(scope="module")
def cpmcs_server() -> Iterator[ServerThread]:
    with ServerThread(create_cpmcs_app(seed=7), name="cpmcs-sim") as server:
        yield server


@pytest.fixture
def cpmcs(cpmcs_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cpmcs_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        client.delete("/_sim/business-errors").raise_for_status()
        yield client


@pytest.fixture(scope="module")
def derms_server() -> Iterator[ServerThread]:
    with ServerThread(create_derms_app(), name="derms-sim") as server:
        yield server


@pytest.fixture
def derms(derms_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=derms_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        client.delete("/_sim/ack").raise_for_status()
        yield client


class TestCpmcsEnrollment:
    def test_new_enrollment_is_kept_pending_with_a_twelve_digit_id(
        self, cpmcs: httpx.Client
    ) -> None:
        request = enroll_request("M-1")

        response = cpmcs.post(ENROLL_PATH, json=request)

        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "PENDING"
        assert re.fullmatch(r"\d{12}", answer["enrollmentId"])
        kept = cpmcs.get("/_sim/state/enrollments").json()
        assert kept == [
            {
                "enrollmentId": answer["enrollmentId"],
                "transactionId": "M-1",
                "status": "PENDING",
                "body": request,
            }
        ]

    def test_each_enrollment_gets_its_own_id(self, cpmcs: httpx.Client) -> None:
        ids = {
            cpmcs.post(ENROLL_PATH, json=enroll_request(f"M-{n}")).json()["enrollmentId"]
            for n in range(20)
        }

        assert len(ids) == 20

    def test_a_transaction_seen_before_is_refused_as_already_enrolled(
        self, cpmcs: httpx.Client
    ) -> None:
        first = cpmcs.post(ENROLL_PATH, json=enroll_request("M-2")).json()

        again = cpmcs.post(ENROLL_PATH, json=enroll_request("M-2"))

        assert again.status_code == 400
        assert again.json() == {
            "status": "ERROR",
            "exception": {
                "messageCategory": 11101,
                "messageNumber": 10589,
                "message": "Enrollment already exists for transaction M-2: "
                + first["enrollmentId"],
            },
        }
        assert len(cpmcs.get("/_sim/state/enrollments").json()) == 1

    def test_an_unknown_program_is_refused_as_a_validation_error(self, cpmcs: httpx.Client) -> None:
        response = cpmcs.post(ENROLL_PATH, json=enroll_request("M-3", program_code="SOLAR"))

        assert response.status_code == 422
        assert response.json() == {
            "status": "VAL-ERROR",
            "exception": {
                "messageCategory": 11101,
                "messageNumber": 10010,
                "message": "Program SOLAR is not defined",
            },
        }
        assert cpmcs.get("/_sim/state/enrollments").json() == []

    def test_the_other_known_program_is_accepted(self, cpmcs: httpx.Client) -> None:
        response = cpmcs.post(ENROLL_PATH, json=enroll_request("M-4", program_code="EVSMART"))

        assert response.status_code == 200

    @pytest.mark.parametrize(
        "content",
        [
            b"not json",
            b"[1, 2]",
            b'{"programInfo": {"programCode": "BYOT"}}',
            b'{"transactionId": "M-5", "programInfo": {}}',
            b'{"transactionId": "M-5", "programInfo": "BYOT"}',
        ],
        ids=["not-json", "not-object", "no-transaction", "no-program-code", "bad-program-info"],
    )
    def test_a_malformed_body_is_refused_as_a_validation_error(
        self, cpmcs: httpx.Client, content: bytes
    ) -> None:
        response = cpmcs.post(
            ENROLL_PATH, content=content, headers={"content-type": "application/json"}
        )

        assert response.status_code == 400
        answer = response.json()
        assert answer["status"] == "VAL-ERROR"
        assert answer["exception"]["messageCategory"] == 11101
        assert answer["exception"]["message"]

    def test_resetting_state_forgets_enrollments_and_transactions(
        self, cpmcs: httpx.Client
    ) -> None:
        cpmcs.post(ENROLL_PATH, json=enroll_request("M-6")).raise_for_status()

        cpmcs.delete("/_sim/state").raise_for_status()

        assert cpmcs.get("/_sim/state/enrollments").json() == []
        assert cpmcs.post(ENROLL_PATH, json=enroll_request("M-6")).status_code == 200

    def test_state_is_readable_in_process(self, cpmcs_server: ServerThread) -> None:
        app = create_cpmcs_app()
        with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
            client.post(ENROLL_PATH, json=enroll_request("M-7")).raise_for_status()

        assert [e.transaction_id for e in app.state.sim.enrollments()] == ["M-7"]

    def test_the_same_seed_hands_out_the_same_ids(self) -> None:
        ids = []
        for _ in range(2):
            with (
                ServerThread(create_cpmcs_app(seed=3)) as server,
                httpx.Client(base_url=server.url) as client,
            ):
                ids.append(client.post(ENROLL_PATH, json=enroll_request("M-8")).json())

        assert ids[0] == ids[1]


def test_cpmcs_health_check_answers_up(cpmcs: httpx.Client) -> None:
    response = cpmcs.get(HEALTH_CHECK_PATH)

    assert response.status_code == 200
    assert response.json() == {"status": "UP"}


def test_cpmcs_counts_calls_per_route_including_failed_ones(cpmcs: httpx.Client) -> None:
    cpmcs.get(HEALTH_CHECK_PATH)
    cpmcs.post(ENROLL_PATH, json=enroll_request("M-9"))
    cpmcs.put("/_sim/faults", json={"status_code": 503})
    cpmcs.get(HEALTH_CHECK_PATH)

    calls = cpmcs.get("/_sim/state/calls").json()

    assert calls == {HEALTH_CHECK_PATH: 2, ENROLL_PATH: 1}


class TestFaults:
    def test_latency_delays_every_answer_by_at_least_the_setting(self, cpmcs: httpx.Client) -> None:
        cpmcs.put("/_sim/faults", json={"latency_ms": 300}).raise_for_status()

        started = time.perf_counter()
        response = cpmcs.get(HEALTH_CHECK_PATH)
        elapsed = time.perf_counter() - started

        assert response.status_code == 200
        assert elapsed >= 0.3

    def test_a_status_code_answers_every_target_call_with_it(self, cpmcs: httpx.Client) -> None:
        cpmcs.put("/_sim/faults", json={"status_code": 503}).raise_for_status()

        health = cpmcs.get(HEALTH_CHECK_PATH)
        enroll = cpmcs.post(ENROLL_PATH, json=enroll_request("M-10"))

        assert (health.status_code, enroll.status_code) == (503, 503)
        assert health.json()["detail"] == "Simulated fault: HTTP 503"
        assert cpmcs.get("/_sim/state/enrollments").json() == []

    def test_an_error_rate_of_one_fails_every_call_with_500(self, cpmcs: httpx.Client) -> None:
        cpmcs.put("/_sim/faults", json={"error_rate": 1.0}).raise_for_status()

        statuses = {cpmcs.get(HEALTH_CHECK_PATH).status_code for _ in range(10)}

        assert statuses == {500}

    def test_the_same_seed_fails_the_same_calls(self) -> None:
        runs = []
        for _ in range(2):
            with (
                ServerThread(create_cpmcs_app(seed=11)) as server,
                httpx.Client(base_url=server.url) as client,
            ):
                client.put("/_sim/faults", json={"error_rate": 0.5}).raise_for_status()
                runs.append([client.get(HEALTH_CHECK_PATH).status_code for _ in range(30)])

        assert runs[0] == runs[1]
        assert set(runs[0]) == {200, 500}

    def test_down_drops_the_connection_and_logs_nothing(
        self, cpmcs: httpx.Client, uvicorn_errors: list[logging.LogRecord]
    ) -> None:
        cpmcs.put("/_sim/faults", json={"down": True}).raise_for_status()

        with pytest.raises(httpx.TransportError):
            cpmcs.get(HEALTH_CHECK_PATH)

        assert cpmcs.get("/_sim/faults").json()["down"] is True
        assert uvicorn_errors == []

    def test_admin_routes_stay_up_whatever_the_faults(self, cpmcs: httpx.Client) -> None:
        cpmcs.put(
            "/_sim/faults", json={"status_code": 500, "error_rate": 1.0, "latency_ms": 0}
        ).raise_for_status()

        assert cpmcs.get("/_sim/state/calls").status_code == 200

    @pytest.mark.parametrize(
        "settings",
        [
            {"latency_ms": -1},
            {"error_rate": 1.5},
            {"error_rate": -0.1},
            {"status_code": 200},
            {"status_code": 600},
            {"down": "sometimes"},
            {"latency": 10},
        ],
    )
    def test_bad_settings_are_refused_and_change_nothing(
        self, cpmcs: httpx.Client, settings: dict[str, Any]
    ) -> None:
        before = cpmcs.get("/_sim/faults").json()

        response = cpmcs.put("/_sim/faults", json=settings)

        assert response.status_code == 422
        assert cpmcs.get("/_sim/faults").json() == before

    def test_reset_restores_a_healthy_target(self, cpmcs: httpx.Client) -> None:
        cpmcs.put(
            "/_sim/faults", json={"latency_ms": 5, "status_code": 502, "down": True}
        ).raise_for_status()

        reset = cpmcs.delete("/_sim/faults")

        defaults = {"latency_ms": 0, "error_rate": 0.0, "status_code": None, "down": False}
        assert reset.json() == defaults
        assert cpmcs.get("/_sim/faults").json() == defaults
        assert cpmcs.get(HEALTH_CHECK_PATH).status_code == 200

    def test_faults_apply_to_derms_too(self, derms: httpx.Client) -> None:
        derms.put("/_sim/faults", json={"status_code": 504}).raise_for_status()

        response = derms.post("/enroll", json={"dacsMessageId": "S-1"})

        assert response.status_code == 504
        assert derms.get("/_sim/state/received").json() == {}


class RecordCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    collector = RecordCollector()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(collector)
    yield collector.records
    logger.removeHandler(collector)


@pytest.mark.parametrize(
    ("create_app", "target_path"),
    [(create_cpmcs_app, ENROLL_PATH), (create_derms_app, "/enroll")],
    ids=["cpmcs", "derms"],
)
def test_credentials_guard_target_routes_only(
    create_app: Callable[..., FastAPI], target_path: str
) -> None:
    app = create_app(credentials=("hub", "s3cret"))
    body = enroll_request("M-11")
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as client:
        anonymous = client.post(target_path, json=body)
        wrong = client.post(target_path, json=body, auth=("hub", "guess"))
        admin = client.get("/_sim/faults")
        right = client.post(target_path, json=body, auth=("hub", "s3cret"))

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert admin.status_code == 200
    assert right.status_code == 200


class TestDerms:
    @pytest.mark.parametrize(
        "route",
        [
            "/enroll",
            "/status-check",
            "/dacs-opt-out",
            "/update-program",
            "/update-aggregator",
            "/device-reservation-ack",
            "/device-outcome-ack",
        ],
    )
    def test_each_message_is_recorded_and_acknowledged(
        self, derms: httpx.Client, route: str
    ) -> None:
        body = {"dacsMessageId": "S-100", "anything": {"nested": [1, 2]}}

        response = derms.post(route, json=body)

        assert response.status_code == 200
        ack = response.json()["MsgAck"]
        assert ack["ackType"] == "SUCCESS"
        assert ISO_UTC_MILLIS.match(ack["whenISO"])
        [answer] = ack["responses"]["response"]
        assert answer["id"] == answer["dacsMessageId"] == "S-100"
        assert (answer["value"], answer["responseCode"]) == ("ACCEPTED", "SUCCESS")
        assert ISO_UTC_MILLIS.match(answer["responseTimeISO"])
        assert derms.get("/_sim/state/received").json() == {route: [body]}

    def test_a_message_without_an_id_is_acknowledged_with_an_empty_one(
        self, derms: httpx.Client
    ) -> None:
        ack = derms.post("/device-reservation-ack", json={"MsgAck": {}}).json()["MsgAck"]

        assert ack["responses"]["response"][0]["id"] == ""

    def test_a_body_that_is_not_an_object_is_refused_and_not_recorded(
        self, derms: httpx.Client
    ) -> None:
        response = derms.post("/enroll", json=["S-1"])

        assert response.status_code == 400
        assert derms.get("/_sim/state/received").json() == {}

    @pytest.mark.parametrize("ack_type", ["ERROR", "FAILURE"])
    def test_the_ack_setting_makes_derms_refuse(self, derms: httpx.Client, ack_type: str) -> None:
        derms.put("/_sim/ack", json={"ackType": ack_type}).raise_for_status()

        ack = derms.post("/update-program", json={"dacsMessageId": "S-2"}).json()["MsgAck"]

        assert ack["ackType"] == ack_type
        assert ack["responses"]["response"][0]["responseCode"] == ack_type
        assert derms.delete("/_sim/ack").json() == {"ackType": "SUCCESS"}

    def test_a_bad_ack_setting_is_refused(self, derms: httpx.Client) -> None:
        response = derms.put("/_sim/ack", json={"ackType": "MAYBE"})

        assert response.status_code == 422
        assert derms.get("/_sim/ack").json() == {"ackType": "SUCCESS"}

    def test_a_device_score_file_is_recorded_by_size_and_digest(self, derms: httpx.Client) -> None:
        content = b"nicId,score\n" + b"NIC-1,0.93\n" * 50_000

        response = derms.post(
            "/device-score/SDCSE_20261126.csv",
            content=content,
            headers={"content-type": "application/octet-stream"},
        )

        assert response.status_code == 202
        assert derms.get("/_sim/state/received").json() == {
            "/device-score": [
                {
                    "fileName": "SDCSE_20261126.csv",
                    "contentType": "application/octet-stream",
                    "size": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            ]
        }

    def test_a_waiter_gets_the_request_its_route_receives_meanwhile(
        self, derms_server: ServerThread, derms: httpx.Client
    ) -> None:
        body = {"dacsMessageId": "S-4"}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                derms.get,
                "/_sim/state/received/wait",
                params={"route": "/device-outcome-ack", "seconds": 20},
            )
            time.sleep(0.3)
            assert not waiting.done()
            derms.post("/enroll", json={"dacsMessageId": "S-other"}).raise_for_status()
            time.sleep(0.3)
            assert not waiting.done()

            derms.post("/device-outcome-ack", json=body).raise_for_status()
            answer = waiting.result(timeout=10)

        assert answer.status_code == 200
        [received] = answer.json()
        assert received["body"] == body
        assert ISO_UTC_MILLIS.match(received["receivedAt"])

    def test_a_waiter_gets_an_empty_list_when_nothing_came_in_time(
        self, derms: httpx.Client
    ) -> None:
        started = time.monotonic()

        answer = derms.get("/_sim/state/received/wait", params={"route": "/enroll", "seconds": 0.3})

        assert answer.json() == []
        assert time.monotonic() - started >= 0.3

    def test_resetting_state_forgets_what_was_received(self, derms: httpx.Client) -> None:
        derms.post("/enroll", json={"dacsMessageId": "S-3"}).raise_for_status()

        derms.delete("/_sim/state").raise_for_status()

        assert derms.get("/_sim/state/received").json() == {}


class TestServerThread:
    def test_port_zero_serves_on_a_real_port_until_stopped(self) -> None:
        server = ServerThread(create_cpmcs_app(), name="probe")
        server.start()
        try:
            assert server.port > 0
            assert server.url == f"http://127.0.0.1:{server.port}"
            assert httpx.get(server.url + HEALTH_CHECK_PATH).status_code == 200
        finally:
            server.stop()

        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + HEALTH_CHECK_PATH)

    def test_a_stopped_server_starts_again_on_the_same_port(self) -> None:
        server = ServerThread(create_cpmcs_app())
        with server:
            first_port = server.port
        with server:
            assert server.port == first_port
            assert httpx.get(server.url + HEALTH_CHECK_PATH).status_code == 200

    def test_an_explicit_port_is_used(self) -> None:
        port = free_port()

        with ServerThread(create_derms_app(), port=port) as server:
            assert server.port == port
            assert httpx.post(server.url + "/enroll", json={}).status_code == 200

    def test_a_port_in_use_fails_to_start(self, cpmcs_server: ServerThread) -> None:
        with pytest.raises(OSError, match="in use"):
            ServerThread(create_cpmcs_app(), port=cpmcs_server.port).start()

    def test_port_is_unknown_before_start(self) -> None:
        with pytest.raises(RuntimeError, match="until it is started"):
            _ = ServerThread(create_cpmcs_app()).port


def send_mail(sink: SmtpSink, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "hub@example.test"
    message["To"] = "ops@example.test, oncall@example.test"
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.send_message(message)


class TestSmtpSink:
    def test_a_message_sent_with_smtplib_is_kept_parsed(self) -> None:
        arrived: list[ReceivedMail] = []
        with SmtpSink(on_message=arrived.append) as sink:
            send_mail(sink, "Error in OUTL-BA-DACS_DRMS_ENROLL_SYNC", "DERMS answered 503.\n")

            [mail] = sink.wait_for(1)

        assert mail.mail_from == "hub@example.test"
        assert mail.rcpt_tos == ("ops@example.test", "oncall@example.test")
        assert mail.subject == "Error in OUTL-BA-DACS_DRMS_ENROLL_SYNC"
        assert mail.body_text == "DERMS answered 503.\n"
        assert mail.message["To"] == "ops@example.test, oncall@example.test"
        assert arrived == [mail]
        assert sink.messages() == [mail]

    def test_wait_for_returns_once_enough_have_come_and_clear_forgets_them(self) -> None:
        with SmtpSink(port=free_port()) as sink:
            for n in range(3):
                send_mail(sink, f"mail {n}", "body")

            subjects = [mail.subject for mail in sink.wait_for(3)]
            sink.clear()
            remaining = sink.messages()

        assert subjects == ["mail 0", "mail 1", "mail 2"]
        assert remaining == []

    def test_wait_for_times_out_saying_how_many_came(self) -> None:
        with SmtpSink() as sink, pytest.raises(TimeoutError, match="received 0 of 1"):
            sink.wait_for(1, timeout=0.2)


def reserve_request(event_id: str, nic_ids: list[str]) -> dict[str, Any]:
    return {
        "eventExternalIdentifier": event_id,
        "eventStartDateTime": "2026-12-01T14:00:00Z",
        "eventEndDateTime": "2026-12-01T18:00:00Z",
        "deviceList": [
            {
                "nicId": nic_id,
                "headEndSystem": "ECOBEE",
                "reservationStartDateTime": "2026-12-01T14:00:00Z",
                "reservationEndDateTime": "2026-12-01T18:00:00Z",
            }
            for nic_id in nic_ids
        ],
    }


def outcome_entry(event_id: str, nic_id: str, outcome: str = "D1SP") -> dict[str, Any]:
    return {
        "eventExternalIdentifier": event_id,
        "nicId": nic_id,
        "headEndSystem": "ECOBEE",
        "outcome": outcome,
        "participationStartDateTime": "2026-12-01T14:00:00Z",
        "participationEndDateTime": "2026-12-01T18:00:00Z",
        "errorMessage": None,
    }


def test_reserve_device_holds_a_device_sent_twice_once(cpmcs: httpx.Client) -> None:
    first_segment = reserve_request("E-1", ["NIC-1", "NIC-2"])
    for body in (first_segment, first_segment, reserve_request("E-2", ["NIC-1"])):
        response = cpmcs.post(RESERVE_DEVICE_PATH, json=body)
        assert (response.status_code, response.json()) == (200, {})

    summary = cpmcs.get("/_sim/state/reservations/summary").json()
    kept = cpmcs.get("/_sim/state/reservations", params={"eventId": "E-1"}).json()

    assert summary == {
        "devices": 3,
        "received": 5,
        "duplicates": 2,
        "calls": 3,
        "events": {"E-1": 2, "E-2": 1},
    }
    assert kept == [
        {
            "eventExternalIdentifier": "E-1",
            "eventStartDateTime": "2026-12-01T14:00:00Z",
            "eventEndDateTime": "2026-12-01T18:00:00Z",
            **device,
            "timesReceived": 2,
        }
        for device in first_segment["deviceList"]
    ]


def test_a_duplicate_reservation_keeps_the_first_and_raises_a_to_do_not_an_error(
    cpmcs: httpx.Client,
) -> None:
    cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1", "NIC-2"]))
    later = reserve_request("E-1", [f"NIC-{n}" for n in range(1, 15)])
    for device in later["deviceList"]:
        device["reservationStartDateTime"] = "2026-12-01T15:00:00Z"

    again = cpmcs.post(RESERVE_DEVICE_PATH, json=later)
    cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1", "NIC-1"]))

    assert (again.status_code, again.json()) == (200, {})
    [nic_1] = [e for e in cpmcs.get("/_sim/state/reservations").json() if e["nicId"] == "NIC-1"]
    assert (nic_1["reservationStartDateTime"], nic_1["timesReceived"]) == (
        "2026-12-01T14:00:00Z",
        4,
    )
    assert cpmcs.get("/_sim/state/to-dos").json() == [
        {
            "toDoNumber": 1,
            "call": "reserveDevice",
            "eventExternalIdentifier": "E-1",
            "message": (
                "2 devices were reserved for program event E-1 already; "
                "their first reservation is kept"
            ),
            "deviceCount": 2,
            "devices": [
                {"nicId": "NIC-1", "headEndSystem": "ECOBEE"},
                {"nicId": "NIC-2", "headEndSystem": "ECOBEE"},
            ],
        },
        {
            "toDoNumber": 2,
            "call": "reserveDevice",
            "eventExternalIdentifier": "E-1",
            "message": (
                "2 devices were reserved for program event E-1 already; "
                "their first reservation is kept"
            ),
            "deviceCount": 2,
            "devices": [
                {"nicId": "NIC-1", "headEndSystem": "ECOBEE"},
                {"nicId": "NIC-1", "headEndSystem": "ECOBEE"},
            ],
        },
    ]
    cpmcs.delete("/_sim/state").raise_for_status()
    assert cpmcs.get("/_sim/state/to-dos").json() == []


def test_reservations_read_back_up_to_the_limit_in_the_order_received(
    cpmcs: httpx.Client,
) -> None:
    cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1", "NIC-2"]))
    cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-2", ["NIC-3"]))

    every = cpmcs.get("/_sim/state/reservations").json()
    first_two = cpmcs.get("/_sim/state/reservations", params={"limit": 2}).json()
    unknown = cpmcs.get("/_sim/state/reservations", params={"eventId": "E-9"}).json()
    bad_limit = cpmcs.get("/_sim/state/reservations", params={"limit": 0})

    assert [entry["nicId"] for entry in every] == ["NIC-1", "NIC-2", "NIC-3"]
    assert [entry["nicId"] for entry in first_two] == ["NIC-1", "NIC-2"]
    assert unknown == []
    assert bad_limit.status_code == 422


def test_a_hundred_thousand_reservations_summarise_in_a_small_answer(
    cpmcs: httpx.Client,
) -> None:
    segment_size = 10_000
    for start in range(0, 100_000, segment_size):
        nic_ids = [f"NIC-{n:06d}" for n in range(start, start + segment_size)]
        cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-BIG", nic_ids)).raise_for_status()

    summary = cpmcs.get("/_sim/state/reservations/summary")
    page = cpmcs.get("/_sim/state/reservations", params={"eventId": "E-BIG", "limit": 5})

    assert summary.json() == {
        "devices": 100_000,
        "received": 100_000,
        "duplicates": 0,
        "calls": 10,
        "events": {"E-BIG": 100_000},
    }
    assert len(summary.content) < 200
    assert [entry["nicId"] for entry in page.json()] == [f"NIC-{n:06d}" for n in range(5)]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (RESERVE_DEVICE_PATH, {"deviceList": []}),
        (RESERVE_DEVICE_PATH, {"eventExternalIdentifier": "E-1", "deviceList": "NIC-1"}),
        (RESERVE_DEVICE_PATH, {"eventExternalIdentifier": "E-1"}),
        (RESERVE_DEVICE_PATH, {"eventExternalIdentifier": "E-1", "deviceList": [{"nicId": "N"}]}),
        (RESERVE_DEVICE_PATH, ["E-1"]),
        (POST_EVENT_OUTCOME_PATH, {"postOutcomeList": {"nicId": "NIC-1"}}),
        (POST_EVENT_OUTCOME_PATH, {}),
        (
            POST_EVENT_OUTCOME_PATH,
            {"postOutcomeList": [outcome_entry("E-1", "NIC-1"), {"nicId": "NIC-2"}]},
        ),
    ],
    ids=[
        "reserve-no-event",
        "reserve-devices-not-a-list",
        "reserve-no-devices",
        "reserve-device-without-head-end",
        "reserve-not-an-object",
        "outcomes-not-a-list",
        "outcomes-missing",
        "outcome-without-event",
    ],
)
def test_a_malformed_device_call_is_refused_and_keeps_nothing(
    cpmcs: httpx.Client, path: str, body: Any
) -> None:
    response = cpmcs.post(path, json=body)

    assert response.status_code == 400
    assert response.json()["status"] == "VAL-ERROR"
    assert response.json()["exception"]["messageNumber"] == 10001
    for kind in ("reservations", "outcomes"):
        assert cpmcs.get(f"/_sim/state/{kind}/summary").json()["calls"] == 0


def test_post_event_outcome_keeps_the_last_outcome_per_device(cpmcs: httpx.Client) -> None:
    first = [outcome_entry("E-1", "NIC-1", "D1ND"), outcome_entry("E-2", "NIC-1")]
    again = [outcome_entry("E-1", "NIC-1", "D1SP")]
    for outcomes in (first, again):
        response = cpmcs.post(POST_EVENT_OUTCOME_PATH, json={"postOutcomeList": outcomes})
        assert (response.status_code, response.json()) == (200, {})

    summary = cpmcs.get("/_sim/state/outcomes/summary").json()
    kept = cpmcs.get("/_sim/state/outcomes", params={"eventId": "E-1"}).json()

    assert summary == {
        "devices": 2,
        "received": 3,
        "duplicates": 1,
        "calls": 2,
        "events": {"E-1": 1, "E-2": 1},
    }
    assert kept == [{**outcome_entry("E-1", "NIC-1", "D1SP"), "timesReceived": 2}]
    assert len(cpmcs.get("/_sim/state/outcomes").json()) == 2


def test_resetting_state_forgets_reservations_and_outcomes(cpmcs: httpx.Client) -> None:
    cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1"])).raise_for_status()
    outcomes = {"postOutcomeList": [outcome_entry("E-1", "NIC-1")]}
    cpmcs.post(POST_EVENT_OUTCOME_PATH, json=outcomes).raise_for_status()

    cpmcs.delete("/_sim/state").raise_for_status()

    empty = {"devices": 0, "received": 0, "duplicates": 0, "calls": 0, "events": {}}
    for kind in ("reservations", "outcomes"):
        assert cpmcs.get(f"/_sim/state/{kind}/summary").json() == empty
        assert cpmcs.get(f"/_sim/state/{kind}").json() == []


def test_fail_calls_fails_exactly_the_numbered_calls_to_one_path(cpmcs: httpx.Client) -> None:
    cpmcs.put(
        "/_sim/faults",
        json={"fail_calls": [3], "fail_calls_path": RESERVE_DEVICE_PATH, "status_code": 503},
    ).raise_for_status()

    health = cpmcs.get(HEALTH_CHECK_PATH)
    statuses = [
        cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", [f"NIC-{n}"])).status_code
        for n in range(1, 6)
    ]

    assert health.status_code == 200
    assert statuses == [200, 200, 503, 200, 200]
    kept = cpmcs.get("/_sim/state/reservations").json()
    assert [entry["nicId"] for entry in kept] == ["NIC-1", "NIC-2", "NIC-4", "NIC-5"]


def test_fail_calls_without_a_path_counts_every_target_call_but_not_admin_ones(
    cpmcs: httpx.Client,
) -> None:
    cpmcs.put("/_sim/faults", json={"fail_calls": [2, 4]}).raise_for_status()

    statuses = []
    for _ in range(5):
        statuses.append(cpmcs.get(HEALTH_CHECK_PATH).status_code)
        cpmcs.get("/_sim/state/calls").raise_for_status()

    assert statuses == [200, 500, 200, 500, 200]
    settings_put = cpmcs.put("/_sim/faults", json={"fail_calls": [1]}).json()
    assert settings_put["fail_calls"] == [1]
    assert cpmcs.get(HEALTH_CHECK_PATH).json() == {
        "status": "FAULT",
        "detail": "Simulated fault of call 1: HTTP 500",
    }


def test_putting_or_deleting_faults_numbers_calls_afresh(cpmcs: httpx.Client) -> None:
    settings = {"fail_calls": [2]}
    cpmcs.put("/_sim/faults", json=settings).raise_for_status()
    before_put = [cpmcs.get(HEALTH_CHECK_PATH).status_code for _ in range(3)]
    cpmcs.put("/_sim/faults", json=settings).raise_for_status()
    after_put = [cpmcs.get(HEALTH_CHECK_PATH).status_code for _ in range(3)]
    cpmcs.delete("/_sim/faults").raise_for_status()
    after_delete = [cpmcs.get(HEALTH_CHECK_PATH).status_code for _ in range(3)]

    assert before_put == after_put == [200, 500, 200]
    assert after_delete == [200, 200, 200]
    assert "fail_calls" not in cpmcs.get("/_sim/faults").json()


@pytest.mark.parametrize(
    "settings",
    [{"fail_calls": [0]}, {"fail_calls": [-1]}, {"fail_calls": 3}, {"fail_calls": ["third"]}],
)
def test_bad_call_numbers_are_refused(cpmcs: httpx.Client, settings: dict[str, Any]) -> None:
    response = cpmcs.put("/_sim/faults", json=settings)

    assert response.status_code == 422
    assert "fail_calls" not in cpmcs.get("/_sim/faults").json()


def lifecycle(event: str, action: str) -> dict[str, str]:
    return {"action": action, "eventExternalIdentifier": event, "externalIdentifier": "S-1"}


@pytest.mark.parametrize(
    ("actions", "answers"),
    [
        (["X1IP", "F1CO"], [(200, None), (200, None)]),
        (["F1CN"], [(200, None)]),
        (["X1IP", "X1IP", "X1SD"], [(200, None), (400, 10023), (400, 10022)]),
        (["F1CO", "X1IP", "F1CN", "F1CO"], [(200, None), (400, 10022), (400, 10022), (400, 10023)]),
        (["F1CN", "F1CO"], [(200, None), (400, 10022)]),
        (["X1DONE"], [(422, 10024)]),
    ],
)
def test_a_program_event_takes_only_the_actions_its_status_leads_to(
    cpmcs: httpx.Client, actions: list[str], answers: list[tuple[int, int | None]]
) -> None:
    cpmcs.post(PROGRAM_EVENT_PATH, json=lifecycle("E-1", "X1SD")).raise_for_status()

    got = []
    for action in actions:
        answer = cpmcs.post(PROGRAM_EVENT_LIFECYCLE_PATH, json=lifecycle("E-1", action))
        number = answer.json()["exception"]["messageNumber"] if answer.status_code != 200 else None
        got.append((answer.status_code, number))

    assert got == answers
    [event] = cpmcs.get("/_sim/state/program-events").json()
    moved = [action for action, (status, _) in zip(actions, answers, strict=True) if status == 200]
    assert event["history"] == ["X1SD", *moved]


def test_a_refused_action_says_why_in_cpmcs_shape(cpmcs: httpx.Client) -> None:
    cpmcs.post(PROGRAM_EVENT_PATH, json=lifecycle("E-1", "X1SD")).raise_for_status()
    cpmcs.post(PROGRAM_EVENT_LIFECYCLE_PATH, json=lifecycle("E-1", "F1CO")).raise_for_status()

    refusals = [
        cpmcs.post(PROGRAM_EVENT_LIFECYCLE_PATH, json=lifecycle("E-1", action)).json()
        for action in ("X1IP", "F1CO", "X1DONE")
    ]

    assert refusals == [
        {
            "status": "ERROR",
            "exception": {
                "messageCategory": 11101,
                "messageNumber": 10022,
                "message": "Program event E-1/S-1 is F1CO: it cannot move to X1IP",
            },
        },
        {
            "status": "ERROR",
            "exception": {
                "messageCategory": 11101,
                "messageNumber": 10023,
                "message": "Program event E-1/S-1 is F1CO already",
            },
        },
        {
            "status": "VAL-ERROR",
            "exception": {
                "messageCategory": 11101,
                "messageNumber": 10024,
                "message": "Action X1DONE is not a program event status (X1SD, X1IP, F1CO, F1CN)",
            },
        },
    ]


class TestBusinessErrors:
    def test_a_route_answers_the_error_asked_for_in_cpmcs_shape_and_keeps_nothing(
        self, cpmcs: httpx.Client
    ) -> None:
        rule = {
            "path": ENROLL_PATH,
            "message_number": 10589,
            "message": "Enrollment already exists",
            "status": "VAL-ERROR",
            "http_status": 422,
        }
        put = cpmcs.put("/_sim/business-errors", json={"rules": [rule]})

        refused = [cpmcs.post(ENROLL_PATH, json=enroll_request(f"M-{n}")) for n in range(2)]

        assert put.json() == {"rules": [{**rule, "times": None, "keys": None}]}
        assert [(r.status_code, r.json()) for r in refused] == [
            (
                422,
                {
                    "status": "VAL-ERROR",
                    "exception": {
                        "messageCategory": 11101,
                        "messageNumber": 10589,
                        "message": "Enrollment already exists",
                    },
                },
            )
        ] * 2
        assert cpmcs.get("/_sim/state/enrollments").json() == []
        assert cpmcs.post(PROGRAM_EVENT_PATH, json=lifecycle("E-1", "X1SD")).status_code == 200

    def test_times_refuses_the_next_n_calls_then_stands_aside(self, cpmcs: httpx.Client) -> None:
        rules = [{"path": ACKNOWLEDGEMENT_PATH, "message_number": 10030, "times": 2}]
        cpmcs.put("/_sim/business-errors", json={"rules": rules}).raise_for_status()

        answers = [
            cpmcs.post(ACKNOWLEDGEMENT_PATH, json={"syncRequestId": f"SR-{n}"}).status_code
            for n in range(4)
        ]

        assert answers == [400, 400, 200, 200]
        received = cpmcs.get("/_sim/state/received/acknowledgements").json()
        assert [body["syncRequestId"] for body in received] == ["SR-2", "SR-3"]

    def test_keys_refuse_only_the_calls_that_name_one_in_body_or_path(
        self, cpmcs: httpx.Client
    ) -> None:
        rules = [
            {"path": SYNC_REQUEST_PATH, "message_number": 10031, "keys": ["SR-BAD"]},
            {"path": RESERVE_DEVICE_PATH, "message_number": 10032, "keys": ["NIC-9", "E-9"]},
        ]
        cpmcs.put("/_sim/business-errors", json={"rules": rules}).raise_for_status()

        sync_ok = cpmcs.patch("/rest/apis/common/sync/syncRequest/SR-OK", json={})
        sync_bad = cpmcs.patch("/rest/apis/common/sync/syncRequest/SR-BAD", json={})
        by_device = cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1", "NIC-9"]))
        by_event = cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-9", ["NIC-1"]))
        neither = cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1"]))

        assert (sync_ok.status_code, sync_bad.status_code) == (200, 400)
        assert sync_bad.json()["exception"]["messageNumber"] == 10031
        assert [r.status_code for r in (by_device, by_event, neither)] == [400, 400, 200]
        assert cpmcs.get("/_sim/state/reservations/summary").json()["devices"] == 1

    def test_the_health_check_can_be_refused_too(self, cpmcs: httpx.Client) -> None:
        rules = [{"path": HEALTH_CHECK_PATH, "message_number": 10040, "times": 1}]
        cpmcs.put("/_sim/business-errors", json={"rules": rules}).raise_for_status()

        assert [cpmcs.get(HEALTH_CHECK_PATH).status_code for _ in range(2)] == [400, 200]

    @pytest.mark.parametrize(
        ("rules", "field"),
        [
            ([{"path": "/rest/apis/nowhere", "message_number": 1}], "rules[0].path"),
            ([{"path": ENROLL_PATH, "message_number": 100000}], "message_number"),
            ([{"path": ENROLL_PATH, "message_number": 1, "http_status": 500}], "http_status"),
            ([{"path": ENROLL_PATH, "message_number": 1, "times": 0}], "times"),
            ([{"path": ENROLL_PATH, "message_number": 1, "keys": []}], "keys"),
            ([{"path": ENROLL_PATH, "message_number": 1, "status": "OOPS"}], "status"),
            ([{"path": ENROLL_PATH}], "message_number"),
        ],
    )
    def test_a_bad_rule_is_refused_naming_its_field_and_changes_nothing(
        self, cpmcs: httpx.Client, rules: list[dict[str, Any]], field: str
    ) -> None:
        before = [{"path": ENROLL_PATH, "message_number": 7}]
        cpmcs.put("/_sim/business-errors", json={"rules": before}).raise_for_status()

        answer = cpmcs.put("/_sim/business-errors", json={"rules": rules})

        assert answer.status_code == 422
        assert field in answer.text
        assert cpmcs.get("/_sim/business-errors").json()["rules"][0]["message_number"] == 7

    def test_delete_answers_every_call_again(self, cpmcs: httpx.Client) -> None:
        rules = [{"path": ENROLL_PATH, "message_number": 10589}]
        cpmcs.put("/_sim/business-errors", json={"rules": rules}).raise_for_status()

        reset = cpmcs.delete("/_sim/business-errors")

        assert reset.json() == {"rules": []}
        assert cpmcs.post(ENROLL_PATH, json=enroll_request("M-1")).status_code == 200


def abandoned(simulator: httpx.Client) -> list[dict[str, Any]]:
    """The calls the simulator saw abandoned, once there is one."""
    deadline = time.monotonic() + 30
    while not (calls := simulator.get("/_sim/faults/abandoned").json()):
        assert time.monotonic() < deadline, "the simulator never saw its caller go"
        time.sleep(0.05)
    assert isinstance(calls, list)
    return calls


@pytest.mark.parametrize("applied", [False, True])
def test_a_call_whose_caller_has_gone_is_applied_only_when_the_faults_say_so(
    cpmcs: httpx.Client, cpmcs_server: ServerThread, applied: bool
) -> None:
    settings = {"latency_ms": 1500, "apply_when_caller_gone": applied}
    put = cpmcs.put("/_sim/faults", json=settings).json()
    with (
        httpx.Client(base_url=cpmcs_server.url, timeout=0.2) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(ENROLL_PATH, json=enroll_request("M-GONE"))

    [call] = abandoned(cpmcs)

    assert put.get("apply_when_caller_gone", False) is applied
    assert call == {"method": "POST", "path": ENROLL_PATH, "applied": applied}
    kept = [e["transactionId"] for e in cpmcs.get("/_sim/state/enrollments").json()]
    assert kept == (["M-GONE"] if applied else [])
    assert cpmcs.get("/_sim/state/calls").json() == {ENROLL_PATH: 1}


def test_a_caller_that_waits_out_the_latency_is_answered_and_nothing_is_abandoned(
    cpmcs: httpx.Client,
) -> None:
    cpmcs.put("/_sim/faults", json={"latency_ms": 100}).raise_for_status()

    answer = cpmcs.post(ENROLL_PATH, json=enroll_request("M-PATIENT"))

    assert answer.status_code == 200
    assert cpmcs.get("/_sim/faults/abandoned").json() == []
    assert "apply_when_caller_gone" not in cpmcs.get("/_sim/faults").json()


@pytest.fixture
def three_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulators made now keep the newest three of each kind (10,000 otherwise)."""
    monkeypatch.setattr("derms_bridge.sandbox.kept.KEPT_PER_KIND", 3)


def test_cpmcs_keeps_the_newest_to_dos_and_bodies_and_numbers_them_all(
    three_kept: None,
) -> None:
    with (
        ServerThread(create_cpmcs_app(seed=7), name="cpmcs-sim") as server,
        httpx.Client(base_url=server.url, timeout=10) as cpmcs,
    ):
        cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1"]))
        for n in range(5):
            cpmcs.post(RESERVE_DEVICE_PATH, json=reserve_request("E-1", ["NIC-1"]))
            cpmcs.post(ACKNOWLEDGEMENT_PATH, json={"syncRequestId": f"SR-{n}"})

        to_dos = cpmcs.get("/_sim/state/to-dos").json()
        acknowledgements = cpmcs.get("/_sim/state/received/acknowledgements").json()

    assert [to_do["toDoNumber"] for to_do in to_dos] == [3, 4, 5]
    assert [body["syncRequestId"] for body in acknowledgements] == ["SR-2", "SR-3", "SR-4"]


def test_derms_keeps_the_newest_requests_of_each_route(three_kept: None) -> None:
    with (
        ServerThread(create_derms_app(), name="derms-sim") as server,
        httpx.Client(base_url=server.url, timeout=10) as derms,
    ):
        for n in range(5):
            derms.post("/enroll", json={"dacsMessageId": f"E-{n}"})
        derms.post("/status-check", json={"dacsMessageId": "S-0"})

        received = derms.get("/_sim/state/received").json()

    assert {route: [r["dacsMessageId"] for r in bodies] for route, bodies in received.items()} == {
        "/enroll": ["E-2", "E-3", "E-4"],
        "/status-check": ["S-0"],
    }


def test_derms_keeps_the_newest_files_it_sent_up_to_its_bytes() -> None:
    no_hub = f"http://127.0.0.1:{free_port()}"
    with (
        ServerThread(create_derms_app(hub_url=no_hub, sent_bytes_kept=250), name="derms") as server,
        httpx.Client(base_url=server.url, timeout=10) as derms,
    ):
        for n in range(3):
            answer = derms.post(
                "/_sim/send/device-reservation",
                data={"message": json.dumps({"messageId": f"RSV-{n}"})},
                files={"file": ("r.csv", b"x" * 100, "text/csv")},
            )
            assert answer.json()["hubAnswer"].startswith("no answer")

        sent = derms.get("/_sim/state/sent").json()

    assert [(each["messageId"], each["size"]) for each in sent] == [("RSV-1", 100), ("RSV-2", 100)]


def test_the_smtp_sink_keeps_the_newest_mails_and_counts_them_all(three_kept: None) -> None:
    with SmtpSink() as sink:
        for n in range(5):
            send_mail(sink, f"mail {n}", "body")

        subjects = [mail.subject for mail in sink.wait_for(5)]

    assert subjects == ["mail 2", "mail 3", "mail 4"]
