"""A simulated Edge DERMS: records what the hub sends and acknowledges it with a MsgAck."""

import asyncio
import contextlib
import hashlib
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from derms_bridge.sandbox.admin_routes import add_reset_route, add_setting_routes
from derms_bridge.sandbox.faults import SIM_PREFIX, install_basic_auth, install_faults

MESSAGE_ROUTES = (
    "/enroll",
    "/status-check",
    "/dacs-opt-out",
    "/update-program",
    "/update-aggregator",
    "/device-reservation-ack",
    "/device-outcome-ack",
)
DEVICE_SCORE_ROUTE = "/device-score"

AckType = Literal["SUCCESS", "ERROR", "FAILURE"]


class AckSetting(BaseModel):
    """The ackType every MsgAck of the simulated DERMS carries."""

    model_config = ConfigDict(extra="forbid")

    ackType: AckType = "SUCCESS"


@dataclass(frozen=True)
class ReceivedRequest:
    route: str
    body: dict[str, Any]
    received_at: datetime


def iso_utc_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def msg_ack(ack_type: AckType, dacs_message_id: str, moment: datetime) -> dict[str, Any]:
    when = iso_utc_millis(moment)
    response = {
        "id": dacs_message_id,
        "value": "ACCEPTED" if ack_type == "SUCCESS" else "REJECTED",
        "responseCode": ack_type,
        "responseTimeISO": when,
        "dacsMessageId": dacs_message_id,
    }
    return {"MsgAck": {"ackType": ack_type, "whenISO": when, "responses": {"response": [response]}}}


class DermsState:
    """Everything the simulated DERMS received and how it answers; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: defaultdict[str, list[ReceivedRequest]] = defaultdict(list)
        self.ack = AckSetting()

    def record(self, route: str, body: dict[str, Any]) -> ReceivedRequest:
        received = ReceivedRequest(route=route, body=body, received_at=datetime.now(UTC))
        with self._lock:
            self._received[route].append(received)
        return received

    def received(self) -> dict[str, list[ReceivedRequest]]:
        with self._lock:
            return {route: list(requests) for route, requests in self._received.items()}

    def reset(self) -> None:
        with self._lock:
            self._received.clear()


def create_derms_app(
    seed: int | None = None, credentials: tuple[str, str] | None = None
) -> FastAPI:
    """The simulated DERMS; its state is ``app.state.sim``, its faults ``app.state.faults``.

    Device score files are recorded under ``/device-score`` as fileName, contentType, size
    and sha256, without their content. With ``credentials`` (user, password) every target
    route wants HTTP Basic authentication.
    """
    app = FastAPI(title="Simulated Edge DERMS")
    state = DermsState()
    app.state.sim = state
    # Set whenever a request is recorded, for whoever waits on one.
    arrived = asyncio.Event()

    async def acknowledge(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "Request body is not valid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "Request body must be a JSON object"}, status_code=400)
        received = state.record(request.url.path, body)
        arrived.set()
        dacs_message_id = body.get("dacsMessageId", "")
        return JSONResponse(msg_ack(state.ack.ackType, str(dacs_message_id), received.received_at))

    for route in MESSAGE_ROUTES:
        app.add_api_route(route, acknowledge, methods=["POST"])

    @app.post(f"{DEVICE_SCORE_ROUTE}/{{file_name}}", status_code=202)
    async def receive_device_score(file_name: str, request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        summary = {
            "fileName": file_name,
            "contentType": request.headers.get("content-type", ""),
            "size": size,
            "sha256": digest.hexdigest(),
        }
        state.record(DEVICE_SCORE_ROUTE, summary)
        arrived.set()
        return summary

    @app.get(f"{SIM_PREFIX}/state/received", tags=["simulator"])
    async def read_received() -> dict[str, list[dict[str, Any]]]:
        return {
            route: [request.body for request in requests]
            for route, requests in state.received().items()
        }

    @app.get(f"{SIM_PREFIX}/state/received/wait", tags=["simulator"])
    async def wait_for_received(
        route: str, seconds: Annotated[float, Query(gt=0, le=300)] = 10.0
    ) -> list[dict[str, Any]]:
        """What `route` received, once it has received something or `seconds` passed
        (then an empty list): one request instead of polling, so that waiting for
        an acknowledgement costs the machine nothing meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not state.received().get(route):
                    arrived.clear()
                    await arrived.wait()
        return [
            {"body": request.body, "receivedAt": iso_utc_millis(request.received_at)}
            for request in state.received().get(route, [])
        ]

    add_reset_route(app, f"{SIM_PREFIX}/state", state.reset)

    def replace_ack(setting: AckSetting) -> None:
        state.ack = setting

    add_setting_routes(
        app, f"{SIM_PREFIX}/ack", "ack", AckSetting, read=lambda: state.ack, replace=replace_ack
    )

    # Starlette runs the middleware added last first: fault, then authenticate.
    if credentials is not None:
        install_basic_auth(app, credentials)
    install_faults(app, seed=seed)
    return app
