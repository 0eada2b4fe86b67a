"""A simulated Oracle CPMCS: the REST services the hub calls, with state in memory."""

import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from derms_bridge.sandbox.admin_routes import add_reset_route
from derms_bridge.sandbox.faults import (
    SIM_PREFIX,
    install_basic_auth,
    install_faults,
    is_admin_path,
)

ENROLL_PATH = "/rest/apis/cross/digitalAssets/programEnrollments/enroll"
ACKNOWLEDGEMENT_PATH = "/rest/apis/cross/digitalAssets/programEnrollments/postAcknowledgement"
DEVICE_STATUS_PATH = "/rest/apis/cross/digitalAssets/controllableDeviceStatus/response"
PROGRAM_EVENT_PATH = "/rest/apis/cross/service/programEvent/"
PROGRAM_EVENT_LIFECYCLE_PATH = "/rest/apis/cross/service/programEvent/lifecycle"
RESERVE_DEVICE_PATH = "/rest/apis/cross/service/programEventParticipation/reserveDevice"
POST_EVENT_OUTCOME_PATH = "/rest/apis/cross/service/programEventParticipation/postEventOutcome"
SYNC_REQUEST_PATH = "/rest/apis/common/sync/syncRequest/{sync_request_id}"
HEALTH_CHECK_PATH = "/rest/apis/common/healthCheck"

#: What the simulated CPMCS answers postControllableDeviceStatus with.
DEVICE_STATUS_BO_STATUS = "X1CO"

KNOWN_PROGRAMS = frozenset({"BYOT", "EVSMART"})
MESSAGE_CATEGORY = 11101
MALFORMED_REQUEST = 10001
PROGRAM_NOT_DEFINED = 10010
PROGRAM_EVENT_EXISTS = 10020
PROGRAM_EVENT_UNKNOWN = 10021
ALREADY_ENROLLED = 10589


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
    """Device entries kept once per (event, nicId, headEndSystem), the last one received winning.

    The totals grow as entries arrive, so that a summary costs the same for ten devices as for
    a million. Not locked: CpmcsState holds its lock around every use.
    """

    def __init__(self) -> None:
        # event id -> (nicId, headEndSystem) -> (times received, last entry received)
        self._by_event: dict[str, dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
        self._devices = 0
        self._received = 0
        self._calls = 0

    def keep(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Keeps the (event id, entry) pairs of one call."""
        self._calls += 1
        for event_id, entry in entries:
            devices = self._by_event.setdefault(event_id, {})
            key = (entry["nicId"], entry["headEndSystem"])
            earlier = devices.get(key)
            if earlier is None:
                self._devices += 1
            devices[key] = (1 if earlier is None else earlier[0] + 1, entry)
            self._received += 1

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
LEDGERS: tuple[Ledger, ...] = ("reservations", "outcomes")


class CpmcsState:
    """Everything the simulated CPMCS remembers; safe to read from another thread."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        # Seeded so that a replayed run hands out the same enrollment ids.
        self._id_source = random.Random(seed)  # noqa: S311
        self._enrollments_by_transaction: dict[str, Enrollment] = {}
        self._enrollment_ids: set[str] = set()
        self._calls: Counter[str] = Counter()
        self._received: dict[str, list[dict[str, Any]]] = {}
        self._program_events: dict[tuple[str, str], dict[str, Any]] = {}
        self._ledgers = {ledger: DeviceLedger() for ledger in LEDGERS}

    def reserve_devices(self, body: dict[str, Any], devices: list[dict[str, Any]]) -> None:
        """Keeps one reserveDevice call; each device entry carries the event's fields."""
        event_fields = {
            name: body.get(name)
            for name in ("eventExternalIdentifier", "eventStartDateTime", "eventEndDateTime")
        }
        event_id = body["eventExternalIdentifier"]
        with self._lock:
            self._ledgers["reservations"].keep(
                (event_id, event_fields | device) for device in devices
            )

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
            self._received.setdefault(kind, []).append(body)

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

    def act_on_program_event(self, key: tuple[str, str], action: str, reason: str | None) -> bool:
        """Moves a program event to `action`; False when there is no such event."""
        with self._lock:
            event = self._program_events.get(key)
            if event is None:
                return False
            event["status"] = action
            event["history"].append(action)
            if reason:
                event["cancelReason"] = reason
            return True

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
            self._ledgers = {ledger: DeviceLedger() for ledger in LEDGERS}


class CallCounterMiddleware:
    """Counts every call to a target route, including those a fault then fails."""

    def __init__(self, app: ASGIApp, state: CpmcsState, prefix: str) -> None:
        self.app = app
        self.state = state
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_admin_path(scope["path"], self.prefix):
            self.state.count_call(scope["path"])
        await self.app(scope, receive, send)


def cpmcs_error(http_status: int, status: str, message_number: int, message: str) -> JSONResponse:
    """A business error in the shape CPMCS answers it."""
    exception = {
        "messageCategory": MESSAGE_CATEGORY,
        "messageNumber": message_number,
        "message": message,
    }
    return JSONResponse({"status": status, "exception": exception}, status_code=http_status)


def _malformed(message: str) -> JSONResponse:
    return cpmcs_error(400, "VAL-ERROR", MALFORMED_REQUEST, message)


class _Malformed(Exception):
    """A request body CPMCS refuses before it looks any further."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.answer = _malformed(message)


async def _json_object(request: Request) -> dict[str, Any]:
    """The body, when it is a JSON object; _Malformed otherwise."""
    try:
        body = await request.json()
    except ValueError:
        raise _Malformed("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Malformed("Request body must be a JSON object")
    return body


def _text(body: dict[str, Any], *path: str) -> str | None:
    value: Any = body
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _device_entries(
    body: dict[str, Any], list_name: str, required: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The objects listed under ``list_name``, each with every ``required`` text; else
    _Malformed.

    One bad entry refuses the whole call, so that a refused segment leaves nothing behind.
    """
    entries = body.get(list_name)
    if not isinstance(entries, list):
        raise _Malformed(f"{list_name} must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(_text(entry, name) is None for name in required):
            raise _Malformed(f"{list_name}[{index}] needs {', '.join(required)}")
    return entries


def _add_ledger_routes(
    app: FastAPI, state: CpmcsState, ledger: Ledger, call: str, entries_are: str
) -> None:
    """GET state/{ledger}/summary and state/{ledger}: what the `call` calls kept."""
    path = f"{SIM_PREFIX}/state/{ledger}"

    @app.get(
        f"{path}/summary",
        tags=["simulator"],
        name=f"read_{ledger}_summary",
        description=f"Totals over the {call} calls accepted (refused ones count in state/calls).",
    )
    async def read_summary() -> dict[str, Any]:
        return state.ledger_summary(ledger)

    @app.get(path, tags=["simulator"], name=f"read_{ledger}", description=entries_are)
    async def read_entries(
        event_id: Annotated[str | None, Query(alias="eventId")] = None,
        limit: Annotated[int, Query(ge=1)] = 100,
    ) -> list[dict[str, Any]]:
        return state.ledger_entries(ledger, event_id, limit)


def create_cpmcs_app(
    seed: int | None = None, credentials: tuple[str, str] | None = None
) -> FastAPI:
    """The simulated CPMCS; its state is ``app.state.sim``, its faults ``app.state.faults``.

    With ``credentials`` (user, password) every target route wants HTTP Basic authentication.
    """
    app = FastAPI(title="Simulated CPMCS")
    state = CpmcsState(seed)
    app.state.sim = state

    @app.exception_handler(_Malformed)
    async def refuse_malformed(_request: Request, malformed: _Malformed) -> JSONResponse:
        return malformed.answer

    @app.post(ENROLL_PATH)
    async def enroll_program(request: Request) -> JSONResponse:
        body = await _json_object(request)
        transaction_id = body.get("transactionId")
        if not isinstance(transaction_id, str) or not transaction_id:
            return _malformed("transactionId is required")
        program_info = body.get("programInfo")
        program_code = program_info.get("programCode") if isinstance(program_info, dict) else None
        if not isinstance(program_code, str) or not program_code:
            return _malformed("programInfo.programCode is required")
        if program_code not in KNOWN_PROGRAMS:
            message = f"Program {program_code} is not defined"
            return cpmcs_error(422, "VAL-ERROR", PROGRAM_NOT_DEFINED, message)
        enrollment, created = state.enroll(transaction_id, body)
        if not created:
            message = (
                f"Enrollment already exists for transaction {transaction_id}: "
                f"{enrollment.enrollment_id}"
            )
            return cpmcs_error(400, "ERROR", ALREADY_ENROLLED, message)
        return JSONResponse({"enrollmentId": enrollment.enrollment_id, "status": enrollment.status})

    @app.post(ACKNOWLEDGEMENT_PATH)
    async def post_acknowledgement(request: Request) -> JSONResponse:
        body = await _json_object(request)
        if _text(body, "syncRequestId") is None:
            return _malformed("syncRequestId is required")
        state.keep("acknowledgements", body)
        return JSONResponse({})

    @app.post(DEVICE_STATUS_PATH)
    async def post_controllable_device_status(request: Request) -> JSONResponse:
        body = await _json_object(request)
        if _text(body, "responseDetail", "transactionID") is None:
            return _malformed("responseDetail.transactionID is required")
        state.keep("device-statuses", body)
        return JSONResponse({"boStatus": DEVICE_STATUS_BO_STATUS})

    @app.post(PROGRAM_EVENT_PATH)
    async def create_program_event(request: Request) -> JSONResponse:
        body = await _json_object(request)
        event, stage = _text(body, "eventExternalIdentifier"), _text(body, "externalIdentifier")
        if event is None or stage is None:
            return _malformed("eventExternalIdentifier and externalIdentifier are required")
        if not state.create_program_event((event, stage), body):
            message = f"Program event {event}/{stage} already exists"
            return cpmcs_error(400, "ERROR", PROGRAM_EVENT_EXISTS, message)
        return JSONResponse({})

    @app.post(PROGRAM_EVENT_LIFECYCLE_PATH)
    async def action_program_event(request: Request) -> JSONResponse:
        body = await _json_object(request)
        event, stage = _text(body, "eventExternalIdentifier"), _text(body, "externalIdentifier")
        action = _text(body, "action")
        if event is None or stage is None or action is None:
            return _malformed("action, eventExternalIdentifier and externalIdentifier are required")
        if not state.act_on_program_event((event, stage), action, _text(body, "cancelReason")):
            message = f"Program event {event}/{stage} does not exist"
            return cpmcs_error(400, "ERROR", PROGRAM_EVENT_UNKNOWN, message)
        return JSONResponse({})

    @app.post(RESERVE_DEVICE_PATH)
    async def reserve_device(request: Request) -> JSONResponse:
        body = await _json_object(request)
        if _text(body, "eventExternalIdentifier") is None:
            return _malformed("eventExternalIdentifier is required")
        devices = _device_entries(body, "deviceList", ("nicId", "headEndSystem"))
        state.reserve_devices(body, devices)
        return JSONResponse({})

    @app.post(POST_EVENT_OUTCOME_PATH)
    async def post_event_outcome(request: Request) -> JSONResponse:
        body = await _json_object(request)
        outcomes = _device_entries(
            body, "postOutcomeList", ("eventExternalIdentifier", "nicId", "headEndSystem")
        )
        state.post_outcomes(outcomes)
        return JSONResponse({})

    @app.patch(SYNC_REQUEST_PATH)
    async def update_sync_request(sync_request_id: str, request: Request) -> JSONResponse:
        body = await _json_object(request)
        state.keep("sync-requests", {"syncRequestId": sync_request_id, "body": body})
        return JSONResponse({})

    @app.get(HEALTH_CHECK_PATH)
    async def health_check() -> dict[str, str]:
        return {"status": "UP"}

    @app.get(f"{SIM_PREFIX}/state/program-events", tags=["simulator"])
    async def read_program_events() -> list[dict[str, Any]]:
        return state.program_events()

    @app.get(f"{SIM_PREFIX}/state/received/{{kind}}", tags=["simulator"])
    async def read_received(kind: str) -> list[dict[str, Any]]:
        """acknowledgements, device-statuses or sync-requests, in the order received."""
        return state.received(kind)

    @app.get(f"{SIM_PREFIX}/state/enrollments", tags=["simulator"])
    async def read_enrollments() -> list[dict[str, Any]]:
        return [enrollment.as_json() for enrollment in state.enrollments()]

    _add_ledger_routes(
        app,
        state,
        "reservations",
        "reserveDevice",
        "Reserved devices, each once with how many times it was received.",
    )
    _add_ledger_routes(
        app,
        state,
        "outcomes",
        "postEventOutcome",
        "Device outcomes, the last received per device, with how many times it was received.",
    )

    @app.get(f"{SIM_PREFIX}/state/calls", tags=["simulator"])
    async def read_calls() -> dict[str, int]:
        return state.calls()

    add_reset_route(app, f"{SIM_PREFIX}/state", state.reset)

    # Starlette runs the middleware added last first: count, then fault, then authenticate.
    if credentials is not None:
        install_basic_auth(app, credentials)
    install_faults(app, seed=seed)
    app.add_middleware(CallCounterMiddleware, state=state, prefix=SIM_PREFIX)
    return app
