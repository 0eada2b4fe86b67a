"""A simulated Edge DERMS: records what the hub sends and acknowledges it with a MsgAck, and
sends the hub reservation and outcome files, again after a FAILURE acknowledgement as DERMS
does by its MAX_RETRIES."""

import asyncio
import contextlib
import hashlib
import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import aiohttp
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from derms_bridge.sandbox.admin_routes import add_reset_route, add_setting_routes
from derms_bridge.sandbox.faults import SIM_PREFIX, install_basic_auth, install_faults
from derms_bridge.sandbox.kept import SENT_FILE_BYTES_KEPT, newest_kept

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

#: The files DERMS sends (flows 7 and 8): the simulator's send route, the hub's route, and
#: the route the hub acknowledges them on.
FILE_FLOWS = {
    "device-reservation": ("/device-reservation-to-dacs", "/device-reservation-ack"),
    "device-outcome": ("/device-outcome-to-dacs", "/device-outcome-ack"),
}


class AckSetting(BaseModel):
    """The ackType every MsgAck of the simulated DERMS carries."""

    model_config = ConfigDict(extra="forbid")

    ackType: AckType = "SUCCESS"


class RetrySetting(BaseModel):
    """DERMS's MAX_RETRIES (of its DRMS_PARAMETERS table) and how long it waits before each."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(default=3, ge=0, le=100)
    retry_delay_seconds: float = Field(default=30.0, ge=0, le=86400)


@dataclass
class Attempt:
    number: int
    sent_at: datetime
    #: The hub's HTTP status, or why no answer came; None while the hub has not answered.
    hub_answer: int | str | None = None
    #: What the hub answered: its JSON (the instance, resumed or acknowledged again).
    hub_reply: Any = None
    ack: AckType | None = None
    acked_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "sentAt": iso_utc_millis(self.sent_at),
            "hubAnswer": self.hub_answer,
            "hubReply": self.hub_reply,
            "ackType": self.ack,
            "ackAt": iso_utc_millis(self.acked_at) if self.acked_at else None,
        }


@dataclass
class SentFile:
    """A file the simulated DERMS sent the hub, kept whole to be sent again."""

    hub_route: str
    ack_route: str
    message: str
    file_name: str
    content: bytes
    content_type: str
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: datetime | None = None

    def as_json(self, message_id: str, setting: RetrySetting) -> dict[str, Any]:
        last_ack = next((a.ack for a in reversed(self.attempts) if a.ack), None)
        return {
            "messageId": message_id,
            "route": self.hub_route,
            "fileName": self.file_name,
            "size": len(self.content),
            "attempts": [attempt.as_json() for attempt in self.attempts],
            "lastAckType": last_ack,
            "retriesLeft": max(0, setting.max_retries - (len(self.attempts) - 1)),
            "nextAttemptAt": iso_utc_millis(self.next_attempt_at) if self.next_attempt_at else None,
        }


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

    def __init__(self, retries: RetrySetting, sent_bytes_kept: int) -> None:
        self._lock = threading.Lock()
        self._sent_bytes_kept = sent_bytes_kept
        self._received: defaultdict[str, deque[ReceivedRequest]] = defaultdict(newest_kept)
        self.ack = AckSetting()
        self.retries = retries
        #: By messageId, in the order first sent.
        self.sent: dict[str, SentFile] = {}

    def record(self, route: str, body: dict[str, Any]) -> ReceivedRequest:
        received = ReceivedRequest(route=route, body=body, received_at=datetime.now(UTC))
        with self._lock:
            self._received[route].append(received)
        return received

    def received(self) -> dict[str, list[ReceivedRequest]]:
        with self._lock:
            return {route: list(requests) for route, requests in self._received.items()}

    def begin_attempt(self, message_id: str, sent: SentFile, *, afresh: bool) -> bool:
        """A new attempt of `sent`; a resend (not `afresh`) of a file sent afresh since, or
        forgotten, is none."""
        with self._lock:
            if afresh:
                self.sent.pop(message_id, None)
                self.sent[message_id] = sent
                self._forget_the_oldest_beyond(self._sent_bytes_kept)
            elif self.sent.get(message_id) is not sent:
                return False
            sent.attempts.append(Attempt(len(sent.attempts) + 1, datetime.now(UTC)))
            sent.next_attempt_at = None
            return True

    def _forget_the_oldest_beyond(self, most_bytes: int) -> None:
        """Files sent first forgotten until those kept hold `most_bytes` at most (the newest
        kept whatever its size); a resend of one forgotten is none."""
        kept = sum(len(sent.content) for sent in self.sent.values())
        while kept > most_bytes and len(self.sent) > 1:
            oldest = next(iter(self.sent))
            kept -= len(self.sent.pop(oldest).content)

    def answered(self, sent: SentFile, hub_answer: int | str, hub_reply: Any) -> None:
        with self._lock:
            sent.attempts[-1].hub_answer = hub_answer
            sent.attempts[-1].hub_reply = hub_reply

    def acknowledged(
        self, ack_route: str, message_id: str, ack_type: AckType, moment: datetime
    ) -> tuple[SentFile, float] | None:
        """Records the ack of a file this simulator sent; answers the file and the delay
        before sending it again when DERMS would, else None."""
        with self._lock:
            sent = self.sent.get(message_id)
            if sent is None or sent.ack_route != ack_route:
                return None
            attempt = sent.attempts[-1]
            if attempt.ack is not None:
                # The same run acknowledged again: DERMS retries once per attempt.
                return None
            attempt.ack, attempt.acked_at = ack_type, moment
            retries_done = len(sent.attempts) - 1
            if ack_type != "FAILURE" or retries_done >= self.retries.max_retries:
                return None
            delay = self.retries.retry_delay_seconds
            sent.next_attempt_at = moment + timedelta(seconds=delay)
            return sent, delay

    def sent_files(self) -> list[dict[str, Any]]:
        with self._lock:
            return [sent.as_json(mid, self.retries) for mid, sent in self.sent.items()]

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self.sent.clear()


def _acknowledged_message_id(body: dict[str, Any]) -> str | None:
    """The first response's id of a MsgAck: the messageId of the file it acknowledges."""
    try:
        message_id = body["MsgAck"]["responses"]["response"][0]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return message_id if isinstance(message_id, str) else None


def create_derms_app(
    seed: int | None = None,
    credentials: tuple[str, str] | None = None,
    hub_url: str | None = None,
    hub_credentials: tuple[str, str] | None = None,
    retries: RetrySetting | None = None,
    sent_bytes_kept: int = SENT_FILE_BYTES_KEPT,
) -> FastAPI:
    """The simulated DERMS; its state is ``app.state.sim``, its faults ``app.state.faults``.

    Device score files are recorded under ``/device-score`` as fileName, contentType, size
    and sha256, without their content. With ``credentials`` (user, password) every target
    route wants HTTP Basic authentication. With ``hub_url`` it sends the hub the files
    posted to ``/_sim/send/...`` as DERMS, with ``hub_credentials``, and sends one again
    after a FAILURE acknowledgement by ``retries``. It keeps the files it sent, to send
    again, up to ``sent_bytes_kept`` bytes of the newest; an older one is sent no more.
    """
    app = FastAPI(title="Simulated Edge DERMS")
    state = DermsState(retries or RetrySetting(), sent_bytes_kept)
    app.state.sim = state
    # Set whenever a request is recorded, for whoever waits on one.
    arrived = asyncio.Event()
    # The resends waiting for their delay, kept so that they are not collected meanwhile.
    resends: set[asyncio.Task[None]] = set()

    async def send_attempt(hub: str, sent: SentFile) -> tuple[int | str, Any]:
        """Posts the file to the hub as DERMS; answers the hub's status (or why it gave
        none) and its reply."""
        form = aiohttp.FormData()
        form.add_field("message", sent.message)
        form.add_field(
            "file", sent.content, filename=sent.file_name, content_type=sent.content_type
        )
        headers = (
            {"Authorization": aiohttp.encode_basic_auth(*hub_credentials)}
            if hub_credentials
            else {}
        )
        answer: int | str
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session,
                session.post(f"{hub}{sent.hub_route}", data=form, headers=headers) as response,
            ):
                text = await response.text()
                answer = response.status
        except (aiohttp.ClientError, TimeoutError) as failure:
            answer, text = f"no answer: {type(failure).__name__} {failure}".strip(), ""
        try:
            reply = json.loads(text) if text else None
        except ValueError:
            reply = text
        state.answered(sent, answer, reply)
        return answer, reply

    async def resend_later(hub: str, message_id: str, sent: SentFile, delay: float) -> None:
        await asyncio.sleep(delay)
        if state.begin_attempt(message_id, sent, afresh=False):
            await send_attempt(hub, sent)

    async def acknowledge(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "Request body is not valid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": "Request body must be a JSON object"}, status_code=400)
        received = state.record(request.url.path, body)
        arrived.set()
        acked_id = _acknowledged_message_id(body)
        ack_type = body.get("MsgAck", {}).get("ackType") if acked_id else None
        if acked_id and ack_type in ("SUCCESS", "ERROR", "FAILURE"):
            resend = state.acknowledged(request.url.path, acked_id, ack_type, received.received_at)
            if resend is not None and hub_url is not None:
                task = asyncio.create_task(resend_later(hub_url, acked_id, *resend))
                resends.add(task)
                task.add_done_callback(resends.discard)
        dacs_message_id = body.get("dacsMessageId", "")
        return JSONResponse(msg_ack(state.ack.ackType, str(dacs_message_id), received.received_at))

    for route in MESSAGE_ROUTES:
        app.add_api_route(route, acknowledge, methods=["POST"])

    def file_sender(hub_route: str, ack_route: str) -> Any:
        async def send_file(
            message: Annotated[str, Form(description="the message, JSON, as DERMS sends it")],
            file: Annotated[UploadFile, File(description="the CSV file")],
        ) -> dict[str, Any]:
            """Sends the hub this file as DERMS, and again after a FAILURE acknowledgement."""
            if hub_url is None:
                raise HTTPException(409, "this DERMS simulator was started without a hub")
            try:
                parsed = json.loads(message)
            except ValueError:
                raise HTTPException(422, "message: not JSON") from None
            message_id = parsed.get("messageId") if isinstance(parsed, dict) else None
            if not isinstance(message_id, str) or not message_id:
                raise HTTPException(422, "message.messageId: a non-empty string is required")
            sent = SentFile(
                hub_route=hub_route,
                ack_route=ack_route,
                message=message,
                file_name=file.filename or "devices.csv",
                content=await file.read(),
                content_type=file.content_type or "text/csv",
            )
            state.begin_attempt(message_id, sent, afresh=True)
            answer, reply = await send_attempt(hub_url, sent)
            return {
                "messageId": message_id,
                "route": hub_route,
                "hubAnswer": answer,
                "hubReply": reply,
            }

        return send_file

    for flow, (hub_route, ack_route) in FILE_FLOWS.items():
        app.add_api_route(
            f"{SIM_PREFIX}/send/{flow}",
            file_sender(hub_route, ack_route),
            methods=["POST"],
            name=f"send_{flow.replace('-', '_')}",
            tags=["simulator"],
        )

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

    @app.get(f"{SIM_PREFIX}/state/sent", tags=["simulator"])
    async def read_sent() -> list[dict[str, Any]]:
        """Each file sent to the hub, its attempts and their acknowledgements."""
        return state.sent_files()

    def forget() -> None:
        for task in resends:
            task.cancel()
        state.reset()

    add_reset_route(app, f"{SIM_PREFIX}/state", forget)

    def replace_retries(setting: RetrySetting) -> None:
        state.retries = setting

    add_setting_routes(
        app,
        f"{SIM_PREFIX}/retries",
        "retries",
        RetrySetting,
        read=lambda: state.retries,
        replace=replace_retries,
    )

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
