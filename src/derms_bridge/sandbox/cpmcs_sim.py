"""A simulated Oracle CPMCS: the REST services the hub calls, with state in memory."""

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from derms_bridge.sandbox.admin_routes import add_reset_route, add_setting_routes
from derms_bridge.sandbox.cpmcs_business_errors import (
    BusinessErrorSettings,
    ScriptedBusinessErrors,
)
from derms_bridge.sandbox.cpmcs_state import NEXT_STATUSES, CpmcsState, Ledger
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
SYNC_REQUEST_PATH = "/rest/apis/common/sync/syncRequest/{syncRequestId}"
HEALTH_CHECK_PATH = "/rest/apis/common/healthCheck"

#: What the simulated CPMCS answers postControllableDeviceStatus with.
DEVICE_STATUS_BO_STATUS = "X1CO"

KNOWN_PROGRAMS = frozenset({"BYOT", "EVSMART"})
MESSAGE_CATEGORY = 11101
MALFORMED_REQUEST = 10001
PROGRAM_NOT_DEFINED = 10010
PROGRAM_EVENT_EXISTS = 10020
PROGRAM_EVENT_UNKNOWN = 10021
#: actionProgramEvent from a status that does not lead to the action's: any action on a
#: completed or cancelled program event, or back to an earlier status.
PROGRAM_EVENT_ACTION_NOT_ALLOWED = 10022
#: actionProgramEvent to the status the program event has already.
PROGRAM_EVENT_ALREADY_IN_STATUS = 10023
#: actionProgramEvent with an action that is no program event status.
PROGRAM_EVENT_ACTION_UNKNOWN = 10024
ALREADY_ENROLLED = 10589


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


class _Refused(Exception):
    """A call CPMCS refuses before it looks any further, with CPMCS's answer."""

    def __init__(self, answer: JSONResponse) -> None:
        super().__init__(answer.body)
        self.answer = answer


def _malformed_call(message: str) -> _Refused:
    return _Refused(_malformed(message))


def _refuse_if_asked(request: Request, body: Any) -> None:
    """_Refused when a rule of ``/_sim/business-errors`` fits this call."""
    scripted: ScriptedBusinessErrors = request.app.state.business_errors
    route: APIRoute = request.scope["route"]
    rule = scripted.refusal(route.path, body, iter(request.path_params.values()))
    if rule is not None:
        answer = cpmcs_error(rule.http_status, rule.status, rule.message_number, rule.message)
        raise _Refused(answer)


async def _json_object(request: Request) -> dict[str, Any]:
    """The body, when it is a JSON object and no business error was asked for this call;
    _Refused otherwise."""
    try:
        body = await request.json()
    except ValueError:
        raise _malformed_call("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _malformed_call("Request body must be a JSON object")
    _refuse_if_asked(request, body)
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
    _Refused.

    One bad entry refuses the whole call, so that a refused segment leaves nothing behind.
    """
    entries = body.get(list_name)
    if not isinstance(entries, list):
        raise _malformed_call(f"{list_name} must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(_text(entry, name) is None for name in required):
            raise _malformed_call(f"{list_name}[{index}] needs {', '.join(required)}")
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
    scripted = ScriptedBusinessErrors()
    app.state.business_errors = scripted

    @app.exception_handler(_Refused)
    async def refuse(_request: Request, refused: _Refused) -> JSONResponse:
        return refused.answer

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
        if action not in NEXT_STATUSES:
            message = f"Action {action} is not a program event status ({', '.join(NEXT_STATUSES)})"
            return cpmcs_error(422, "VAL-ERROR", PROGRAM_EVENT_ACTION_UNKNOWN, message)
        outcome, status = state.act_on_program_event(
            (event, stage), action, _text(body, "cancelReason")
        )
        if outcome == "unknown event":
            message = f"Program event {event}/{stage} does not exist"
            return cpmcs_error(400, "ERROR", PROGRAM_EVENT_UNKNOWN, message)
        if outcome == "already":
            message = f"Program event {event}/{stage} is {status} already"
            return cpmcs_error(400, "ERROR", PROGRAM_EVENT_ALREADY_IN_STATUS, message)
        if outcome == "not allowed":
            message = f"Program event {event}/{stage} is {status}: it cannot move to {action}"
            return cpmcs_error(400, "ERROR", PROGRAM_EVENT_ACTION_NOT_ALLOWED, message)
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
    async def update_sync_request(request: Request) -> JSONResponse:
        body = await _json_object(request)
        sync_request_id = request.path_params["syncRequestId"]
        state.keep("sync-requests", {"syncRequestId": sync_request_id, "body": body})
        return JSONResponse({})

    @app.get(HEALTH_CHECK_PATH)
    async def health_check(request: Request) -> dict[str, str]:
        _refuse_if_asked(request, None)
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

    @app.get(
        f"{SIM_PREFIX}/state/to-dos",
        tags=["simulator"],
        description="The To-Do entries CPMCS raised instead of a business error, oldest first.",
    )
    async def read_to_dos() -> list[dict[str, Any]]:
        return state.to_dos()

    @app.get(f"{SIM_PREFIX}/state/calls", tags=["simulator"])
    async def read_calls() -> dict[str, int]:
        return state.calls()

    target_paths = [
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and not is_admin_path(route.path)
    ]

    def replace_business_errors(settings: BusinessErrorSettings) -> None:
        for index, rule in enumerate(settings.rules):
            if rule.path not in target_paths:
                detail = (
                    f"rules[{index}].path: {rule.path!r} is not a CPMCS route; "
                    f"one of {', '.join(target_paths)}"
                )
                raise HTTPException(422, detail)
        scripted.settings = settings

    add_setting_routes(
        app,
        f"{SIM_PREFIX}/business-errors",
        "business_errors",
        BusinessErrorSettings,
        read=lambda: scripted.settings,
        replace=replace_business_errors,
    )

    add_reset_route(app, f"{SIM_PREFIX}/state", state.reset)

    # Starlette runs the middleware added last first: count, then fault, then authenticate.
    if credentials is not None:
        install_basic_auth(app, credentials)
    install_faults(app, seed=seed)
    app.add_middleware(CallCounterMiddleware, state=state, prefix=SIM_PREFIX)
    return app
