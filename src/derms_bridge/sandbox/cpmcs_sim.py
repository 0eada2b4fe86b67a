"""A simulated Oracle CPMCS: program enrollment and the health check, with state in memory."""

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from derms_bridge.sandbox.faults import (
    SIM_PREFIX,
    install_basic_auth,
    install_faults,
    is_admin_path,
)

ENROLL_PATH = "/rest/apis/cross/digitalAssets/programEnrollments/enroll"
HEALTH_CHECK_PATH = "/rest/apis/common/healthCheck"

KNOWN_PROGRAMS = frozenset({"BYOT", "EVSMART"})
MESSAGE_CATEGORY = 11101
MALFORMED_REQUEST = 10001
PROGRAM_NOT_DEFINED = 10010
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


class CpmcsState:
    """Everything the simulated CPMCS remembers; safe to read from another thread."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        # Seeded so that a replayed run hands out the same enrollment ids.
        self._id_source = random.Random(seed)  # noqa: S311
        self._enrollments_by_transaction: dict[str, Enrollment] = {}
        self._enrollment_ids: set[str] = set()
        self._calls: Counter[str] = Counter()

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


def create_cpmcs_app(
    seed: int | None = None, credentials: tuple[str, str] | None = None
) -> FastAPI:
    """The simulated CPMCS; its state is ``app.state.sim``, its faults ``app.state.faults``.

    With ``credentials`` (user, password) every target route wants HTTP Basic authentication.
    """
    app = FastAPI(title="Simulated CPMCS")
    state = CpmcsState(seed)
    app.state.sim = state

    @app.post(ENROLL_PATH)
    async def enroll_program(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _malformed("Request body is not valid JSON")
        if not isinstance(body, dict):
            return _malformed("Request body must be a JSON object")
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

    @app.get(HEALTH_CHECK_PATH)
    async def health_check() -> dict[str, str]:
        return {"status": "UP"}

    @app.get(f"{SIM_PREFIX}/state/enrollments", tags=["simulator"])
    async def read_enrollments() -> list[dict[str, Any]]:
        return [enrollment.as_json() for enrollment in state.enrollments()]

    @app.get(f"{SIM_PREFIX}/state/calls", tags=["simulator"])
    async def read_calls() -> dict[str, int]:
        return state.calls()

    @app.delete(f"{SIM_PREFIX}/state", tags=["simulator"])
    async def reset_state() -> dict[str, str]:
        state.reset()
        return {"status": "RESET"}

    # Starlette runs the middleware added last first: count, then fault, then authenticate.
    if credentials is not None:
        install_basic_auth(app, credentials)
    install_faults(app, seed=seed)
    app.add_middleware(CallCounterMiddleware, state=state, prefix=SIM_PREFIX)
    return app
