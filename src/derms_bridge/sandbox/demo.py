"""`derms-bridge sandbox --demo`: a utility's day played through the sandbox, compressed into
minutes, then summed up and checked.

The day goes through the hub's real routes as DERMS, CPMCS and an operator call them, through
the simulators' `/_sim` routes where a real system would act by itself (DERMS sending a file,
CPMCS going down), and through CPMCS's FTP server and object store as its batch jobs write
them. Everything it sends is drawn from a random source seeded with `--seed`, so that two
runs with one seed send the same traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.connectors.file_storage.interface import FileStorage, Folder
from derms_bridge.lookups import Lookups
from derms_bridge.sandbox.demo_summary import DemoSummary, outbound_calls
from derms_bridge.sandbox.smtp_sink import SmtpSink
from derms_bridge.schemas.event_device_outcome import OUTCOME_HEADER
from derms_bridge.schemas.event_device_reservation import RESERVATION_HEADER
from derms_bridge.settings.file_storage import FileStorageSettings, StorageSettings

#: The full day's reservation file, and its one-minute CPMCS outage.
FULL_DEVICES = 100_000
FULL_OUTAGE_SECONDS = 60.0
#: The pause between two moments of the full day, for whoever watches the console.
FULL_PAUSE_SECONDS = 8.0
FULL_ENROLLMENT_BATCHES = 10
#: The smallest day still shows every part: files of several segments, a real outage.
MIN_DEVICES = 200
MIN_OUTAGE_SECONDS = 3.0
MIN_ENROLLMENT_BATCHES = 2
#: How long any one step of the day may take before the demo calls it lost.
STEP_DEADLINE_SECONDS = 600.0
POLL_SECONDS = 0.5
#: How often a file's progress is read while it goes.
PROGRESS_SECONDS = 1.0

#: The day played: a Monday in the sandbox's week of December 2026.
DAY = datetime(2026, 12, 7, tzinfo=UTC)
EVENT_START = DAY + timedelta(hours=14)
EVENT_END = DAY + timedelta(hours=18)
DIVISIONS = ("NORTH", "SOUTH")
#: DERMS's device kinds: (program, MAKE!MODEL, assetType, head-end system).
DEVICE_KINDS = (
    ("BYOT", "ECOBEE!SMART5", "THERMOSTAT", "ECOBEE"),
    ("BYOT", "GOOGLE!NEST3", "THERMOSTAT", "GOOGLE"),
    ("EVSMART", "CHARGEPOINT!HOME", "EV_CHARGER", "CHARGEPOINT"),
)
HEAD_END_SYSTEMS = tuple(kind[3] for kind in DEVICE_KINDS)
#: The outcomes DERMS reports for the devices that did not opt out, with their weights.
OUTCOME_WEIGHTS = {"SUCCESS": 88, "NON_RESPONSIVE": 7, "ERROR": 4, "CANCELLED": 1}
OUTCOME_ERROR = "Device did not acknowledge the control command"
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
FILE_SCHEDULES = ("device_score_ftp", "device_score_os")


class DemoLostError(Exception):
    """A step of the day did not end within its deadline: what it waited for is named."""


@dataclass(frozen=True)
class DemoScale:
    """How much of the day to play: 1 is the full day, 0.02 a test's."""

    seed: int = 1
    scale: float = 1.0

    @property
    def devices(self) -> int:
        return max(MIN_DEVICES, round(FULL_DEVICES * self.scale))

    @property
    def outage_seconds(self) -> float:
        return max(MIN_OUTAGE_SECONDS, FULL_OUTAGE_SECONDS * self.scale)

    @property
    def pause_seconds(self) -> float:
        return FULL_PAUSE_SECONDS * self.scale

    @property
    def enrollment_batches(self) -> int:
        return max(MIN_ENROLLMENT_BATCHES, round(FULL_ENROLLMENT_BATCHES * self.scale))

    @property
    def opt_outs(self) -> int:
        return max(3, min(50, self.devices // 2000))

    @property
    def score_files(self) -> int:
        return 2


@dataclass(frozen=True)
class Device:
    device_id: str
    nic_id: str
    head_end: str


@dataclass
class Sent:
    """What the day sent, by what it went to; the summary compares it with what arrived."""

    enrollments: list[tuple[str, str]] = field(default_factory=list)
    enrollment_batches: int = 0
    enrollment_syncs: list[str] = field(default_factory=list)
    enrollment_acks: list[str] = field(default_factory=list)
    program_syncs: list[str] = field(default_factory=list)
    aggregator_syncs: list[str] = field(default_factory=list)
    status_checks: list[str] = field(default_factory=list)
    stage_statuses: list[tuple[str, str]] = field(default_factory=list)
    final_stage_status: dict[str, str] = field(default_factory=dict)
    reservation_id: str = ""
    reservation_rows: int = 0
    opt_outs: list[str] = field(default_factory=list)
    unavailabilities: list[tuple[str, str]] = field(default_factory=list)
    outcome_id: str = ""
    outcome_rows: int = 0
    #: Device score files by store ("FTP", "bucket"): name -> sha256 of the content.
    score_files: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoEndpoints:
    hub: str
    cpmcs: str
    derms: str
    derms_caller: tuple[str, str]
    cpmcs_caller: tuple[str, str]
    operator: tuple[str, str]


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def csv_bytes(header: tuple[str, ...], rows: Iterator[tuple[object, ...]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


class DayOfTraffic:
    """The demo's day, moment by moment, and its summary."""

    def __init__(
        self,
        scale: DemoScale,
        endpoints: DemoEndpoints,
        console: Console,
        mail: SmtpSink,
        stores: FileStorageSettings,
        lookups: Lookups,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.scale = scale
        self.endpoints = endpoints
        self.console = console
        self.mail = mail
        self.stores = stores
        self.lookups = lookups
        self.sleep = sleep
        # Seeded for a day that plays the same each time, not for secrets.
        self.random = random.Random(scale.seed)  # noqa: S311
        self.sent = Sent()
        self.devices: list[Device] = []
        self.opted_out: set[str] = set()
        self.event_id = f"EV-{scale.seed:04d}-1"
        self.stages = ("ST-1", "ST-2")
        self.started_at = datetime.now(UTC)
        #: The hub's calls counted before the day: the counts of earlier runs stay in
        #: /metrics, as a counter's do across a process's restarts.
        self.calls_before: dict[tuple[str, str], dict[str, float]] = {}
        timeout = httpx.Timeout(120.0, connect=10.0)
        self.as_derms = httpx.Client(
            base_url=endpoints.hub, auth=endpoints.derms_caller, timeout=timeout
        )
        self.as_cpmcs = httpx.Client(
            base_url=endpoints.hub, auth=endpoints.cpmcs_caller, timeout=timeout
        )
        self.as_operator = httpx.Client(
            base_url=endpoints.hub, auth=endpoints.operator, timeout=timeout
        )
        self.cpmcs_sim = httpx.Client(base_url=endpoints.cpmcs, timeout=timeout)
        self.derms_sim = httpx.Client(base_url=endpoints.derms, timeout=timeout)

    def close(self) -> None:
        for client in (
            self.as_derms,
            self.as_cpmcs,
            self.as_operator,
            self.cpmcs_sim,
            self.derms_sim,
        ):
            client.close()

    # What the console shows.

    def moment(self, clock: str, text: str) -> None:
        self.console.print(f"[bold cyan]demo {clock}[/] {text}", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(f"           {text}", highlight=False)

    def pause(self) -> None:
        if self.scale.pause_seconds > 0:
            self.sleep(self.scale.pause_seconds)

    # Calls, each answered as the caller expects or the demo stops with what went wrong.

    @staticmethod
    def answered(response: httpx.Response, *statuses: int) -> httpx.Response:
        if response.status_code not in statuses:
            raise DemoLostError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text[:300]}"
            )
        return response

    def expect(self, response: httpx.Response, *statuses: int) -> Any:
        """The JSON of an answer with one of `statuses`."""
        answered = self.answered(response, *statuses)
        return answered.json() if answered.content else None

    def wait_for(self, what: str, ready: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + STEP_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            found = ready()
            if found:
                return found
            self.sleep(POLL_SECONDS)
        raise DemoLostError(f"{what}: not within {STEP_DEADLINE_SECONDS:g} s")

    # The day.

    def play(self) -> None:
        self.calls_before = outbound_calls(self.as_operator)
        self.moment(
            "05:00",
            f"a utility's day, seed {self.scale.seed}: {self.scale.devices:,} devices "
            f"reserved, a {self.scale.outage_seconds:g} s CPMCS outage",
        )
        self.program_syncs()
        self.pause()
        self.enrollments()
        self.pause()
        self.enrollment_syncs()
        self.pause()
        self.status_checks()
        self.pause()
        self.schedule_event()
        self.pause()
        self.reservation()
        self.pause()
        self.opt_outs()
        self.pause()
        self.run_event()
        self.pause()
        self.outcomes_through_outage()
        self.pause()
        self.device_scores()

    def program_syncs(self) -> None:
        self.moment("06:00", "CPMCS syncs its programs and an aggregator to DERMS (flows 11-14)")
        for number, (code, description) in enumerate(
            (("BYOT", "Bring your own thermostat"), ("EVSMART", "Smart EV charging")), 1
        ):
            sync_id = f"SRP-{self.scale.seed:04d}-{number}"
            rule = {
                "ruleId": f"R-{code}",
                "cycleFrequency": self.random.choice(("X1WK", "X1MN", "X1SN")),
                "maxEvents": self.random.randint(5, 20),
                "maxEventHours": self.random.choice((2, 3, 4)),
                "weekDays": ["X1MO", "X1TU", "X1WE", "X1TH", "X1FR"],
                "allowEventDays": "X1WD",
            }
            message = {
                "sendDetails": {
                    "syncRequestId": sync_id,
                    "program": {
                        "programCode": code,
                        "description": description,
                        "division": self.random.choice(DIVISIONS),
                        "rules": [rule],
                    },
                }
            }
            self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-GEDPGRMSG", json=message), 200)
            self.sent.program_syncs.append(sync_id)
        sync_id = f"SRA-{self.scale.seed:04d}-1"
        aggregator = {
            "sendDetails": {
                "syncRequestId": sync_id,
                "aggregator": {
                    "aggregatorId": "AGG-1",
                    "name": "Sunny Aggregation LLC",
                    "status": "ACTIVE",
                    "division": "NORTH",
                    "contacts": [
                        {"contactId": "C-9", "name": "Grace Hopper", "email": "grace@example.com"}
                    ],
                },
            }
        }
        self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-GEDAGRMSG", json=aggregator), 200)
        self.sent.aggregator_syncs.append(sync_id)
        self.note("programs BYOT and EVSMART, aggregator AGG-1: DERMS has them, CPMCS its syncs")

    def enrollment_request(self, message_id: str, number: int) -> dict[str, Any]:
        program, specification, asset_type, head_end = self.random.choice(DEVICE_KINDS)
        device = Device(
            device_id=f"DV{self.scale.seed:04d}{number:06d}",
            nic_id=f"NIC-{self.scale.seed:04d}-{number:06d}",
            head_end=head_end,
        )
        self.devices.append(device)
        name = f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}"
        account = f"{self.random.randrange(10**9, 10**10)}"
        return {
            "messageId": message_id,
            "customerInfo": {
                "cisPersonId": f"{self.random.randrange(10**9, 10**10)}",
                "cisAccountId": account,
                "name": name,
                "homePhone": f"555-{self.random.randrange(10**4):04d}",
                "email": f"{name.split()[0].lower()}.{number}@example.com",
            },
            "programInfo": {
                "cisServiceAgreementId": f"{self.random.randrange(10**9, 10**10)}",
                "programCode": program,
                "startDateTimeISO": iso_millis(DAY),
                "endDateTimeISO": iso_millis(DAY + timedelta(days=365)),
            },
            "locationInfo": {
                "division": self.random.choice(DIVISIONS),
                "cisPremiseId": f"{self.random.randrange(10**9, 10**10)}",
                "cisServicePointId": f"{self.random.randrange(10**9, 10**10)}",
                "timeZone": "US/Eastern",
                "address1": f"{self.random.randint(1, 999)} Main St",
                "city": "Springfield",
                "country": "USA",
                "state": "IL",
                "postal": "62701",
            },
            "assetInfo": {
                "installationMethod": "SELF",
                "assetOwnership": "W1OW",
                "assetList": [
                    {
                        "sequence": 1,
                        "assetId": device.device_id,
                        "specification": specification,
                        "assetType": asset_type,
                        "badgeNo": f"B-{number}",
                        "serialNo": f"SN-{number}",
                        "nicId": device.nic_id,
                        "headEndSystem": head_end,
                    }
                ],
            },
        }

    def enrollments(self) -> None:
        batches = self.scale.enrollment_batches
        self.moment("07:00", f"DERMS sends {batches} enrollment batches (flow 1)")
        number = 0
        for batch in range(1, batches + 1):
            requests = []
            for _ in range(self.random.randint(3, 8)):
                number += 1
                message_id = f"ENR-{self.scale.seed:04d}-{number:05d}"
                requests.append(self.enrollment_request(message_id, number))
            message = {"drmsInstanceId": "DRMS-1", "enrollmentRequests": requests}
            ack = self.expect(self.as_derms.post("/enroll-to-dacs", json=message), 200)
            for response in ack["MsgAck"]["responses"]["response"]:
                self.sent.enrollments.append((response["id"], response["responseCode"]))
            self.sent.enrollment_batches += 1
            self.note(
                f"batch {batch}: {len(requests)} enrollments, MsgAck {ack['MsgAck']['ackType']}"
            )

    def enrollment_syncs(self) -> None:
        enrolled = self.expect(self.cpmcs_sim.get("/_sim/state/enrollments"), 200)
        self.moment(
            "08:00",
            f"CPMCS syncs its {len(enrolled)} new enrollments to DERMS (flow 2), "
            "DERMS acknowledges each with the devices' head-end status (flow 3)",
        )
        for enrollment in enrolled:
            sync_id = f"S{enrollment['enrollmentId'][-12:]}"
            body = enrollment["body"]
            asset = body["assetInfo"]["assetList"][0]
            message = {
                "sendDetails": {
                    "syncRequestId": sync_id,
                    "contactInfo": {
                        "contactId": f"C-{enrollment['enrollmentId'][-6:]}",
                        "cisPersonId": body["customerInfo"]["cisPersonId"],
                    },
                    "subscriptionInfo": {
                        "subscriptionId": f"SUB-{enrollment['enrollmentId']}",
                        "cisAccountId": body["customerInfo"]["cisAccountId"],
                        "subscriptionType": "ENROLL",
                        "status": "ACTIVE",
                        "programId": body["programInfo"]["programCode"],
                        "startDateTime": utc_text(DAY),
                        "endDateTime": utc_text(DAY + timedelta(days=365)),
                        "programCode": body["programInfo"]["programCode"],
                    },
                    "locationInfo": {
                        "division": body["locationInfo"]["division"],
                        "servicePointId": f"SP-{enrollment['enrollmentId'][-6:]}",
                        "cisPremiseId": body["locationInfo"]["cisPremiseId"],
                        "cisServicePointId": body["locationInfo"]["cisServicePointId"],
                        "controllableDevices": [
                            {
                                "deviceId": asset["assetId"],
                                "deviceType": asset["assetType"],
                                "specification": asset["specification"],
                                "nicId": asset["nicId"],
                                "headEndSystem": asset["headEndSystem"],
                                "serialNo": asset["serialNo"],
                                "badgeNo": asset["badgeNo"],
                            }
                        ],
                    },
                }
            }
            self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-NMSDASMSG", json=message), 200)
            self.sent.enrollment_syncs.append(sync_id)
            ack = {
                "dacsMessageId": sync_id,
                "ackType": "SUCCESS",
                "whenISO": iso_millis(datetime.now(UTC)),
                "devices": [
                    {
                        "deviceId": asset["assetId"],
                        "headEndStatus": "REGISTERED",
                        "message": "registered at the head-end",
                    }
                ],
                "errors": [],
            }
            self.expect(self.as_derms.post("/enroll-ack-all-to-dacs", json=ack), 200)
            self.sent.enrollment_acks.append(sync_id)

    def status_checks(self) -> None:
        checked = self.random.sample(self.devices, k=min(3, len(self.devices)))
        self.moment("08:30", f"CPMCS checks {len(checked)} devices' status (flows 4 and 5)")
        for number, device in enumerate(checked, 1):
            communication_id = f"COMM-{self.scale.seed:04d}-{number}"
            message = {
                "sendDetails": {
                    "communicationId": communication_id,
                    "deviceInfo": {
                        "division": "NORTH",
                        "deviceType": "THERMOSTAT",
                        "specification": "X1ECOBEE5",
                        "headEndSystem": device.head_end,
                        "nicid": device.nic_id,
                    },
                }
            }
            self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-CTRLDVCS", json=message), 200)
            answer = {
                "dacsMessageId": communication_id,
                "responseCode": "SUCCESS",
                "message": "device online",
            }
            self.expect(self.as_derms.post("/status-check-ack-to-dacs", json=answer), 200)
            self.sent.status_checks.append(communication_id)

    def stage_status(self, stage: str, status: str, reason: str | None = None) -> None:
        number = len(self.sent.stage_statuses) + 1
        message: dict[str, Any] = {
            "messageId": f"STG-{self.scale.seed:04d}-{number}",
            "eventId": self.event_id,
            "stageId": stage,
            "programId": "BYOT",
            "eventType": "ECONOMIC",
            "stageStatus": status,
            "startDateTimeISO": iso_millis(EVENT_START),
            "endDateTimeISO": iso_millis(EVENT_END),
        }
        if reason is not None:
            message["cancelReason"] = reason
        ack = self.expect(self.as_derms.post("/stage-status-to-dacs", json=message), 200)
        self.sent.stage_statuses.append((stage, status))
        self.sent.final_stage_status[stage] = status
        self.note(f"{self.event_id} {stage} {status}: MsgAck {ack['MsgAck']['ackType']}")

    def schedule_event(self) -> None:
        self.moment(
            "09:00",
            f"DERMS schedules event {self.event_id}, 14:00 to 18:00, in two stages (flow 6)",
        )
        for stage in self.stages:
            self.stage_status(stage, "SCHEDULED")

    def reserved_devices(self) -> Iterator[Device]:
        yield from self.devices
        for number in range(len(self.devices) + 1, self.scale.devices + 1):
            yield Device(
                device_id=f"DV{self.scale.seed:04d}{number:06d}",
                nic_id=f"NIC-{self.scale.seed:04d}-{number:06d}",
                head_end=self.random.choice(HEAD_END_SYSTEMS),
            )

    def send_file(self, flow: str, message: dict[str, Any], name: str, content: bytes) -> str:
        """DERMS sends the file; answers the hub's instance."""
        answer = self.expect(
            self.derms_sim.post(
                f"/_sim/send/{flow}",
                data={"message": json.dumps(message)},
                files={"file": (name, content, "text/csv")},
            ),
            200,
        )
        if answer["hubAnswer"] != 202:
            raise DemoLostError(f"{flow} {message['messageId']}: the hub answered {answer}")
        instance_id: str = answer["hubReply"]["instanceId"]
        return instance_id

    def sent_file(self, message_id: str) -> dict[str, Any] | None:
        files = self.expect(self.derms_sim.get("/_sim/state/sent"), 200)
        return next((f for f in files if f["messageId"] == message_id), None)

    def settled(self, message_id: str) -> dict[str, Any] | None:
        """The file DERMS sent once acknowledged with no resend waiting, else None."""
        sent = self.sent_file(message_id)
        if sent is None or sent["nextAttemptAt"] is not None:
            return None
        last = sent["attempts"][-1]
        return sent if last["ackType"] is not None else None

    def follow_file(self, instance_id: str, message_id: str) -> dict[str, Any]:
        """Shows the file's segments as they go, until DERMS has its acknowledgement."""
        shown = ""
        deadline = time.monotonic() + STEP_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            settled = self.settled(message_id)
            if settled is not None:
                return settled
            detail = self.expect(self.as_operator.get(f"/ops/instances/{instance_id}"), 200)
            progress = detail.get("file")
            if progress:
                segments = progress["segments"]
                line = (
                    f"{message_id} run {progress['run']}: {progress['state']}, "
                    + ", ".join(f"{count} {state}" for state, count in segments.items() if count)
                    + f" segments; {progress['rows_sent']:,}/{progress['total_rows']:,} rows"
                )
                if line != shown:
                    self.note(line)
                    shown = line
            self.sleep(PROGRESS_SECONDS)
        raise DemoLostError(f"{message_id}: no acknowledgement within {STEP_DEADLINE_SECONDS:g} s")

    def reservation(self) -> None:
        self.moment(
            "10:00",
            f"DERMS sends the event's reservation file: {self.scale.devices:,} devices (flow 7)",
        )
        self.devices = list(self.reserved_devices())
        content = csv_bytes(
            RESERVATION_HEADER,
            (
                (n, d.nic_id, d.head_end, utc_text(EVENT_START), utc_text(EVENT_END))
                for n, d in enumerate(self.devices, 1)
            ),
        )
        message_id = f"RSV-{self.scale.seed:04d}-1"
        message = {
            "drmsInstanceId": "DRMS-1",
            "messageId": message_id,
            "eventId": self.event_id,
            "stageId": self.stages[0],
            "eventType": "ECONOMIC",
            "eventStartDateTime": utc_text(EVENT_START),
            "eventEndDateTime": utc_text(EVENT_END),
        }
        instance_id = self.send_file(
            "device-reservation", message, f"reservation-{self.event_id}.csv", content
        )
        self.sent.reservation_id, self.sent.reservation_rows = message_id, len(self.devices)
        self.note(f"{message_id}: {len(content):,} bytes taken, instance {instance_id}")
        settled = self.follow_file(instance_id, message_id)
        self.note(f"{message_id}: DERMS has its acknowledgement, {settled['lastAckType']}")

    def opt_outs(self) -> None:
        chosen = self.random.sample(self.devices, k=self.scale.opt_outs)
        self.moment(
            "12:00",
            f"{len(chosen)} customers opt out of the event (flow 9); one more is away "
            "tomorrow, then back (customer unavailability ADD and DELETE, flow 10)",
        )
        for number, device in enumerate(chosen, 1):
            message_id = f"OPT-{self.scale.seed:04d}-{number:03d}"
            message = {
                "sendDetails": {
                    "messageId": message_id,
                    "eventExternalIdentifier": self.event_id,
                    "deviceInfo": {
                        "division": self.random.choice(DIVISIONS),
                        "deviceId": device.device_id,
                        "nicId": device.nic_id,
                        "headEndSystem": device.head_end,
                    },
                }
            }
            self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-EPOPTOMSG", json=message), 200)
            self.sent.opt_outs.append(message_id)
            self.opted_out.add(device.nic_id)
        away = self.random.choice(self.devices)
        for action in ("ADD", "DELETE"):
            message_id = f"UNAV-{self.scale.seed:04d}-{action}"
            message = {
                "sendDetails": {
                    "messageId": message_id,
                    "action": action,
                    "unavailabilityId": f"UA-{self.scale.seed:04d}-1",
                    "startDateTime": utc_text(DAY + timedelta(days=1, hours=13)),
                    "endDateTime": utc_text(DAY + timedelta(days=1, hours=19)),
                    "deviceInfo": {
                        "division": "NORTH",
                        "deviceId": away.device_id,
                        "nicId": away.nic_id,
                        "headEndSystem": away.head_end,
                    },
                }
            }
            self.expect(self.as_cpmcs.post("/cpmcs/outbound/X1-CUSTUNAVL", json=message), 200)
            self.sent.unavailabilities.append((message_id, action))

    def run_event(self) -> None:
        self.moment("14:00", f"the event runs: {self.stages[0]} active, {self.stages[1]} cancelled")
        self.stage_status(self.stages[0], "ACTIVE")
        self.stage_status(self.stages[1], "CANCELLED", "forecast load lower than expected")
        self.moment("18:00", f"the event ends: {self.stages[0]} completed")
        self.stage_status(self.stages[0], "COMPLETED")

    def outcome_content(self) -> bytes:
        outcomes = list(OUTCOME_WEIGHTS)
        weights = list(OUTCOME_WEIGHTS.values())
        rows = []
        for number, device in enumerate(self.devices, 1):
            outcome = (
                "OVERRIDE"
                if device.nic_id in self.opted_out
                else self.random.choices(outcomes, weights)[0]
            )
            rows.append(
                (
                    number,
                    self.event_id,
                    device.nic_id,
                    device.head_end,
                    outcome,
                    utc_text(EVENT_START),
                    utc_text(EVENT_END),
                    OUTCOME_ERROR if outcome == "ERROR" else "",
                )
            )
        return csv_bytes(OUTCOME_HEADER, iter(rows))

    def outcomes_through_outage(self) -> None:
        outage = self.scale.outage_seconds
        # DERMS's DRMS_PARAMETERS for the compressed day: a resend every third of the
        # outage, enough of them to outlast it twice.
        delay = outage / 3
        self.expect(
            self.derms_sim.put(
                "/_sim/retries", json={"max_retries": 6, "retry_delay_seconds": delay}
            ),
            200,
        )
        self.moment(
            "19:00",
            f"CPMCS goes down for {outage:g} s (PUT /_sim/faults down); "
            f"DERMS resends a file {delay:g} s after a FAILURE, up to 6 times",
        )
        down_at = datetime.now(UTC)
        self.expect(self.cpmcs_sim.put("/_sim/faults", json={"down": True}), 200)
        content = self.outcome_content()
        message_id = f"OUT-{self.scale.seed:04d}-1"
        file_name = f"outcome-{self.event_id}.csv"
        message = {"drmsInstanceId": "DRMS-1", "messageId": message_id, "fileName": file_name}
        self.moment("19:05", f"DERMS sends the outcomes of {len(self.devices):,} devices (flow 8)")
        instance_id = self.send_file("device-outcome", message, file_name, content)
        self.sent.outcome_id, self.sent.outcome_rows = message_id, len(self.devices)
        self.wait_for(
            f"{message_id}: a FAILURE acknowledgement while CPMCS is down",
            lambda: (self.sent_file(message_id) or {}).get("lastAckType") == "FAILURE",
        )
        self.note(
            f"{message_id}: FAILURE acknowledged (CPMCS unreachable), DERMS will resend; "
            f"instance {instance_id}"
        )
        left = outage - (datetime.now(UTC) - down_at).total_seconds()
        if left > 0:
            self.sleep(left)
        self.expect(self.cpmcs_sim.delete("/_sim/faults"), 200)
        self.moment("20:00", "CPMCS is back (DELETE /_sim/faults)")
        settled = self.follow_file(instance_id, message_id)
        attempts = len(settled["attempts"])
        self.note(f"{message_id}: {settled['lastAckType']} after {attempts} deliveries")

    def score_places(self) -> dict[str, tuple[StorageSettings, Folder]]:
        """Where CPMCS leaves device score files: its FTP server's folder and its bucket."""
        return {
            "FTP": (
                self.stores.ftp,
                Folder(self.lookups.prop("dacs.dvcScore.ftp.input.directory")),
            ),
            "bucket": (
                self.stores.object_storage,
                Folder(
                    self.lookups.prop("dacs.os.dvcScore.bucketname"),
                    self.lookups.prop("dacs.os.namespace"),
                ),
            ),
        }

    def device_scores(self) -> None:
        prefix = self.lookups.prop("dacs.dvcScore.extract.filename.prefix")
        self.moment(
            "02:00",
            "CPMCS's X1-SDCSE batch writes the device score files on its FTP server and "
            "in its bucket; the schedules send them to DERMS (flows 16 and 17)",
        )
        day = (DAY + timedelta(days=1)).strftime("%Y%m%d")
        for place, (settings, folder) in self.score_places().items():
            store = open_storage(settings)
            for part in range(1, self.scale.score_files + 1):
                name = f"{prefix}_{day}_{self.scale.seed:04d}_{part}.csv"
                asyncio.run(write_file(store, folder, name, self.score_content()))
            waiting = asyncio.run(store.list(folder, prefix))
            self.sent.score_files[place] = {
                stored.name: asyncio.run(file_sha256(store, folder, stored.name))
                for stored in waiting
            }
            self.note(f"{place} {folder.path}: {', '.join(sorted(self.sent.score_files[place]))}")
        for flow in FILE_SCHEDULES:
            started = self.expect(self.as_operator.post(f"/ops/schedules/{flow}/run"), 202)
            instance_id: str = started["instanceId"]
            done = self.wait_for(
                f"the {flow} run {instance_id}", functools.partial(self.finished, instance_id)
            )
            self.note(f"{flow}: run {instance_id} {done['status']}")

    def score_content(self) -> bytes:
        sample = self.random.sample(self.devices, k=min(500, len(self.devices)))
        return csv_bytes(
            ("nicId", "headEndSystem", "deviceScore"),
            ((d.nic_id, d.head_end, self.random.randint(0, 100)) for d in sample),
        )

    def finished(self, instance_id: str) -> dict[str, Any] | None:
        detail: dict[str, Any] = self.expect(
            self.as_operator.get(f"/ops/instances/{instance_id}"), 200
        )
        return None if detail["status"] == "in_progress" else detail


async def write_file(store: FileStorage, folder: Folder, name: str, content: bytes) -> None:
    async def chunks() -> Any:
        yield content

    await store.write(folder, name, chunks())


async def file_sha256(store: FileStorage, folder: Folder, name: str) -> str:
    digest = hashlib.sha256()
    async for chunk in store.read(folder, name):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class DemoRun:
    """The demo in its thread; `nothing_lost` is None until its summary is done."""

    thread: threading.Thread
    nothing_lost: bool | None = None


def wait_for_hub(hub_url: str) -> None:
    deadline = time.monotonic() + STEP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{hub_url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(POLL_SECONDS)
    raise DemoLostError(f"the hub did not answer {hub_url}/healthz")


def start_demo(day: DayOfTraffic, stop_sandbox: Callable[[], None]) -> DemoRun:
    """Plays the day once the hub answers, prints the summary, then stops the sandbox."""

    def play_then_stop() -> None:
        try:
            wait_for_hub(day.endpoints.hub)
            day.play()
            run.nothing_lost = DemoSummary(day).print_and_check().nothing_lost
        except (DemoLostError, httpx.HTTPError) as lost:
            day.console.print(f"[bold red]demo stopped[/]: {escape(str(lost))}", highlight=False)
            run.nothing_lost = False
        finally:
            day.close()
            stop_sandbox()

    run = DemoRun(threading.Thread(target=play_then_stop, name="demo", daemon=True))
    run.thread.start()
    return run
