"""What the simulated CPMCS keeps in memory: enrollments, program events, the devices
reserved and the outcomes posted per event, the To-Do entries its calls raised, the calls
made and the bodies received."""

import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Literal

from derms_bridge.sandbox.kept import newest_kept


@dataclass(frozen=True)
class Enrollment:
    enrollment_id: str
    transaction_id: str
    status: str
    body: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "enrollmentId": self.enrollment_id,
            "transactionId": self.transaction_id,
            "status": self.status,
            "body": self.body,
        }


class DeviceLedger:
    """Device entries kept once per (event, nicId, headEndSystem): the first one received, or
    with ``last_wins`` the last one.

    The totals grow as entries arrive, so that a summary costs the same for ten devices as for
    a million. Not locked: CpmcsState holds its lock around every use.
    """

    def __init__(self, *, last_wins: bool) -> None:
        self._last_wins = last_wins
        # event id -> (nicId, headEndSystem) -> (times received, entry kept)
        self._by_event: dict[str, dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
        self._devices = 0
        self._received = 0
        self._calls = 0

    def keep(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Keeps the (event id, entry) pairs of one call; the entries whose device the event
        held already."""
        self._calls += 1
        held_already = []
        for event_id, entry in entries:
            devices = self._by_event.setdefault(event_id, {})
            key = (entry["nicId"], entry["headEndSystem"])
            earlier = devices.get(key)
            if earlier is None:
                self._devices += 1
                devices[key] = (1, entry)
            else:
                held_already.append(entry)
                devices[key] = (earlier[0] + 1, entry if self._last_wins else earlier[1])
            self._received += 1
        return held_already

    def summary(self) -> dict[str, Any]:
        return {
            "devices": self._devices,
            "received": self._received,
            "duplicates": self._received - self._devices,
            "calls": self._calls,
            "events": {event_id: len(devices) for event_id, devices in self._by_event.items()},
        }

    def entries(self, event_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` entries kept, of one event or of all, in the order first received."""
        kept: Iterator[tuple[int, dict[str, Any]]]
        if event_id is None:
            kept = chain.from_iterable(devices.values() for devices in self._by_event.values())
        else:
            kept = iter(self._by_event.get(event_id, {}).values())
        return [dict(entry, timesReceived=times) for times, entry in islice(kept, limit)]


#: The calls whose device entries CPMCS keeps in a ledger of their own, by the ledger's name.
Ledger = Literal["reservations", "outcomes"]


def _new_ledgers() -> dict[Ledger, DeviceLedger]:
    # A device reserved again keeps its first reservation (the duplicate goes to a To-Do);
    # an outcome posted again replaces the one before, as postEventOutcome updates it.
    return {"reservations": DeviceLedger(last_wins=False), "outcomes": DeviceLedger(last_wins=True)}


#: How many of the devices a To-Do names; it counts them all.
TO_DO_DEVICES_NAMED = 10

#: A program event's statuses (R: the StageStatus lookup's CPMCS side), and the actions
#: CPMCS takes from each: a completed or cancelled program event takes none.
SCHEDULED, IN_PROGRESS, COMPLETED, CANCELLED = "X1SD", "X1IP", "F1CO", "F1CN"
NEXT_STATUSES: dict[str, frozenset[str]] = {
    SCHEDULED: frozenset({IN_PROGRESS, COMPLETED, CANCELLED}),
    IN_PROGRESS: frozenset({COMPLETED, CANCELLED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
}

#: What actionProgramEvent made of an action: done, or why not.
ActionOutcome = Literal["moved", "unknown event", "already", "not allowed"]


class CpmcsState:
    """Everything the simulated CPMCS remembers; safe to read from another thread."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        # Seeded so that a replayed run hands out the same enrollment ids.
        self._id_source = random.Random(seed)  # noqa: S311
        self._enrollments_by_transaction: dict[str, Enrollment] = {}
        self._enrollment_ids: set[str] = set()
        self._calls: Counter[str] = Counter()
        self._received: dict[str, deque[dict[str, Any]]] = {}
        self._program_events: dict[tuple[str, str], dict[str, Any]] = {}
        self._ledgers = _new_ledgers()
        self._to_dos: deque[dict[str, Any]] = newest_kept()
        self._to_dos_raised = 0

    def reserve_devices(self, body: dict[str, Any], devices: list[dict[str, Any]]) -> None:
        """Keeps one reserveDevice call; each device entry carries the event's fields.

        A device the event holds already is no business error: CPMCS keeps the reservation
        it has and raises one To-Do for the call, naming the devices (R: reserveDevice
        "will not return any business faults but handle these with a To-Do task").
        """
        event_fields = {
            name: body.get(name)
            for name in ("eventExternalIdentifier", "eventStartDateTime", "eventEndDateTime")
        }
        event_id = body["eventExternalIdentifier"]
        with self._lock:
            held_already = self._ledgers["reservations"].keep(
                (event_id, event_fields | device) for device in devices
            )
            if held_already:
                self._to_dos_raised += 1
                self._to_dos.append(
                    {
                        "toDoNumber": self._to_dos_raised,
                        "call": "reserveDevice",
                        "eventExternalIdentifier": event_id,
                        "message": (
                            f"{len(held_already)} devices were reserved for program event "
                            f"{event_id} already; their first reservation is kept"
                        ),
                        "deviceCount": len(held_already),
                        "devices": [
                            {"nicId": entry["nicId"], "headEndSystem": entry["headEndSystem"]}
                            for entry in held_already[:TO_DO_DEVICES_NAMED]
                        ],
                    }
                )

    def to_dos(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._to_dos)

    def post_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Keeps one postEventOutcome call; an outcome names its own event."""
        with self._lock:
            self._ledgers["outcomes"].keep(
                (outcome["eventExternalIdentifier"], outcome) for outcome in outcomes
            )

    def ledger_summary(self, ledger: Ledger) -> dict[str, Any]:
        with self._lock:
            return self._ledgers[ledger].summary()

    def ledger_entries(
        self, ledger: Ledger, event_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        with self._lock:
            return self._ledgers[ledger].entries(event_id, limit)

    def keep(self, kind: str, body: dict[str, Any]) -> None:
        """Keeps a request body under `kind` (acknowledgements, sync-requests, ...)."""
        with self._lock:
            self._received.setdefault(kind, newest_kept()).append(body)

    def received(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received.get(kind, []))

    def create_program_event(self, key: tuple[str, str], body: dict[str, Any]) -> bool:
        """Keeps a new program event SCHEDULED; False when it exists already."""
        with self._lock:
            if key in self._program_events:
                return False
            self._program_events[key] = {
                "eventExternalIdentifier": key[0],
                "externalIdentifier": key[1],
                "status": "X1SD",
                "history": ["X1SD"],
                "created": body,
            }
            return True

    def act_on_program_event(
        self, key: tuple[str, str], action: str, reason: str | None
    ) -> tuple[ActionOutcome, str | None]:
        """Moves a program event to the status `action` when its status allows it; what came
        of it, and the event's status now (None without the event)."""
        with self._lock:
            event = self._program_events.get(key)
            if event is None:
                return "unknown event", None
            status: str = event["status"]
            if action == status:
                return "already", status
            if action not in NEXT_STATUSES[status]:
                return "not allowed", status
            event["status"] = action
            event["history"].append(action)
            if reason:
                event["cancelReason"] = reason
            return "moved", action

    def program_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(event, history=list(event["history"]))
                for event in self._program_events.values()
            ]

    def enroll(self, transaction_id: str, body: dict[str, Any]) -> tuple[Enrollment, bool]:
        """Keeps a new PENDING enrollment, or returns the one the transaction already made.

        The flag says whether the enrollment is new.
        """
        with self._lock:
            existing = self._enrollments_by_transaction.get(transaction_id)
            if existing is not None:
                return existing, False
            enrollment = Enrollment(
                enrollment_id=self._new_enrollment_id(),
                transaction_id=transaction_id,
                status="PENDING",
                body=body,
            )
            self._enrollments_by_transaction[transaction_id] = enrollment
            return enrollment, True

    def _new_enrollment_id(self) -> str:
        while True:
            candidate = str(self._id_source.randrange(10**11, 10**12))
            if candidate not in self._enrollment_ids:
                self._enrollment_ids.add(candidate)
                return candidate

    def enrollments(self) -> list[Enrollment]:
        with self._lock:
            return list(self._enrollments_by_transaction.values())

    def count_call(self, path: str) -> None:
        with self._lock:
            self._calls[path] += 1

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._enrollments_by_transaction.clear()
            self._enrollment_ids.clear()
            self._calls.clear()
            self._received.clear()
            self._program_events.clear()
            self._ledgers = _new_ledgers()
            self._to_dos.clear()
            self._to_dos_raised = 0
