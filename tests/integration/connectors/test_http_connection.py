"""HttpConnection, CpmcsClient and DermsClient against real servers on loopback.

Every server here is a real uvicorn on 127.0.0.1: the simulators, a tiny OAuth2 token
server with a protected API, a scripted server that answers whatever a test asks, and a
TLS server whose certificate a test-made CA signs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trustme
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from derms_bridge import tracing
from derms_bridge.connectors.cpmcs import OPERATIONS, CpmcsClient
from derms_bridge.connectors.derms import DermsClient
from derms_bridge.connectors.http import HttpConnection
from derms_bridge.errors import BusinessError, ConfigurationError, TechnicalFault
from derms_bridge.flows.ports import AnyJson
from derms_bridge.lookups import Lookup, Lookups, load_lookups
from derms_bridge.sandbox.cpmcs_sim import create_cpmcs_app
from derms_bridge.sandbox.derms_sim import create_derms_app
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread, free_port
from derms_bridge.schemas.cpmcs import EnrollProgramRequest
from derms_bridge.schemas.ops import Activity
from derms_bridge.settings.connections import Connection
from derms_bridge.settings.tracing import Tracing
from tests.otlp_receiver import OtlpReceiver

ENROLL_PATH = OPERATIONS["enrollProgram"][1]
ROOT = Path(__file__).resolve().parents[3]
LOOKUPS_DIR = ROOT / "config" / "lookups"

BASIC_USER = "hub"
BASIC_PASSWORD = "s3cret-basic-pw"
CLIENT_ID = "derms-bridge"
CLIENT_SECRET = "oauth-client-s3cret"


def enroll_body(transaction_id: str, program: str = "BYOT") -> EnrollProgramRequest:
    return EnrollProgramRequest.model_validate(
        {
            "transactionId": transaction_id,
            "enrollmentSource": "X1BY",
            "customerInfo": {"cisPersonId": "P-1", "cisAccountId": "A-1", "name": "Ada Lovelace"},
            "programInfo": {"programCode": program, "startDate": "2026-12-01"},
            "locationInfo": {"division": "NORTH", "cisPremiseId": "PR-1"},
            "assetInfo": {"assetList": [{"specification": "X1ECOBEE5", "assetType": "X1TH"}]},
        }
    )


def connection_settings(base_url: str, **extra: Any) -> Connection:
    """A Connection as the settings file would give it, with short timeouts."""
    return Connection.model_validate(
        {"base_url": base_url, "timeouts": {"connect": 2, "read": 3}, **extra}
    )


@asynccontextmanager
async def connected(settings: Connection, system: str = "CPMCS") -> AsyncIterator[HttpConnection]:
    connection = HttpConnection(system, settings)
    try:
        yield connection
    finally:
        await connection.aclose()


class Calls:
    """The observer: every Activity the connection reports."""

    def __init__(self) -> None:
        self.records: list[Activity] = []

    def __call__(self, record: Activity) -> None:
        self.records.append(record)

    def one(self) -> Activity:
        assert len(self.records) == 1, self.records
        return self.records[0]


# --- HTTP Basic against the CPMCS simulator ---------------------------------------------


@pytest.fixture(scope="module")
def basic_cpmcs() -> Iterator[ServerThread]:
    app = create_cpmcs_app(seed=3, credentials=(BASIC_USER, BASIC_PASSWORD))
    with ServerThread(app, name="CPMCS simulator with Basic") as server:
        yield server


def basic_auth(password: str) -> dict[str, Any]:
    return {"auth": {"type": "basic", "username": BASIC_USER, "password": password}}


async def test_basic_auth_enrolls_with_the_right_password(basic_cpmcs: ServerThread) -> None:
    calls = Calls()
    async with connected(connection_settings(basic_cpmcs.url, **basic_auth(BASIC_PASSWORD))) as c:
        answer = await CpmcsClient(c, calls).enroll_program(enroll_body("BASIC-OK"))

    assert answer.status == "PENDING"
    assert answer.enrollmentId
    record = calls.one()
    assert (record.target, record.operation, record.http_status, record.error) == (
        "CPMCS",
        "enrollProgram",
        200,
        None,
    )


async def test_basic_auth_with_a_wrong_password_is_a_fault_without_the_password(
    basic_cpmcs: ServerThread,
) -> None:
    wrong = "not-the-Pa55word"
    calls = Calls()
    async with connected(connection_settings(basic_cpmcs.url, **basic_auth(wrong))) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("BASIC-BAD"))

    fault = caught.value
    assert fault.http_status == 401
    assert "HTTP 401" in str(fault)
    assert wrong not in str(fault)
    assert BASIC_PASSWORD not in str(fault)
    record = calls.one()
    assert record.http_status == 401
    assert record.error is not None
    assert wrong not in record.error


async def test_no_credential_at_all_is_refused(basic_cpmcs: ServerThread) -> None:
    async with connected(connection_settings(basic_cpmcs.url)) as c:
        with pytest.raises(TechnicalFault, match="HTTP 401"):
            await CpmcsClient(c).enroll_program(enroll_body("BASIC-NONE"))


# --- OAuth2 client credentials ----------------------------------------------------------


@dataclass
class OAuthState:
    """What the token server and its protected API remember; shared with the test thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    expires_in: float = 3600.0
    refuse_tokens: bool = False
    refuse_api: bool = False
    accepted: set[str] = field(default_factory=set)
    api_calls: int = 0
    api_tokens: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=list)
    #: (path, the traceparent it came with or None) of every request, in order.
    traceparents: list[tuple[str, str | None]] = field(default_factory=list)

    def reset(self) -> None:
        with self.lock:
            self.issued = 0
            self.expires_in = 3600.0
            self.refuse_tokens = False
            self.refuse_api = False
            self.accepted.clear()
            self.api_calls = 0
            self.api_tokens.clear()
            self.grant_types.clear()
            self.traceparents.clear()


def create_oauth_app(state: OAuthState) -> FastAPI:
    app = FastAPI()
    expected_client = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        grant_type = form.get("grant_type", [""])[0]
        with state.lock:
            state.traceparents.append(("/token", request.headers.get("traceparent")))
            state.grant_types.append(grant_type)
            if (
                state.refuse_tokens
                or grant_type != "client_credentials"
                or request.headers.get("authorization") != expected_client
            ):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            state.issued += 1
            issued = f"tok-{state.issued}"
            state.accepted.add(issued)
            lifetime = state.expires_in
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": lifetime}
        )

    @app.post(ENROLL_PATH)
    async def protected(request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization", "")
        with state.lock:
            state.traceparents.append((ENROLL_PATH, request.headers.get("traceparent")))
            state.api_calls += 1
            state.api_tokens.append(authorization)
            bearer = authorization.removeprefix("Bearer ")
            allowed = (
                not state.refuse_api
                and authorization.startswith("Bearer ")
                and bearer in state.accepted
            )
            number = state.api_calls
        if not allowed:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"enrollmentId": f"E-{number}", "status": "PENDING"})

    return app


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[tuple[ServerThread, OAuthState]]:
    state = OAuthState()
    with ServerThread(create_oauth_app(state), name="OAuth2 token server") as server:
        yield server, state


@pytest.fixture
def oauth(oauth_server: tuple[ServerThread, OAuthState]) -> tuple[ServerThread, OAuthState]:
    oauth_server[1].reset()
    return oauth_server


def oauth_settings(server: ServerThread, secret: str = CLIENT_SECRET) -> Connection:
    return connection_settings(
        server.url,
        auth={
            "type": "oauth2",
            "token_url": f"{server.url}/token",
            "client_id": CLIENT_ID,
            "client_secret": secret,
        },
    )


async def test_oauth2_token_is_fetched_once_and_reused(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    async with connected(oauth_settings(server)) as c:
        client = CpmcsClient(c)
        answers = [await client.enroll_program(enroll_body(f"O-{n}")) for n in range(4)]

    assert [a.enrollmentId for a in answers] == ["E-1", "E-2", "E-3", "E-4"]
    assert state.issued == 1
    assert state.grant_types == ["client_credentials"]
    assert state.api_tokens == ["Bearer tok-1"] * 4


async def test_oauth2_concurrent_first_calls_share_one_token(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    async with connected(oauth_settings(server)) as c:
        client = CpmcsClient(c)
        await asyncio.gather(*(client.enroll_program(enroll_body(f"C-{n}")) for n in range(8)))

    assert state.issued == 1
    assert set(state.api_tokens) == {"Bearer tok-1"}


async def test_a_calls_span_is_a_child_of_the_running_one_and_its_token_request_carries_it(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    with OtlpReceiver() as receiver:
        tracing.start_exporting(
            Tracing(endpoint=receiver.endpoint, batch_delay_seconds=0.2), process="test"
        )
        try:
            async with connected(oauth_settings(server)) as c:
                with tracing.span("step") as step:
                    await CpmcsClient(c).enroll_program(enroll_body("T-1"))
                    await CpmcsClient(c).enroll_program(enroll_body("T-2"))
        finally:
            await tracing.stop_exporting()
        spans = receiver.spans

    [parent] = [span for span in spans if span.name == "step"]
    calls = [span for span in spans if span.name == "CPMCS enrollProgram"]
    assert parent.span_id == f"{step.get_span_context().span_id:016x}"
    assert [(c.trace_id, c.parent_id, c.kind) for c in calls] == [
        (parent.trace_id, parent.span_id, 3)
    ] * 2
    assert [c.attributes["http.response.status_code"] for c in calls] == [200, 200]
    assert len({c.span_id for c in calls}) == 2
    # Each request went out with its call's own span as the parent, the first call's
    # token request included; the token is reused by the second.
    first, second = (f"00-{parent.trace_id}-{c.span_id}-01" for c in calls)
    assert state.traceparents == [
        ("/token", first),
        (ENROLL_PATH, first),
        (ENROLL_PATH, second),
    ]


async def test_without_tracing_a_callers_traceparent_goes_to_the_call_and_its_token_request(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with connected(oauth_settings(server)) as c:
        with tracing.span("step", parent=tracing.continued({"traceparent": caller})):
            await CpmcsClient(c).enroll_program(enroll_body("T-1"))
        await CpmcsClient(c).enroll_program(enroll_body("T-2"))

    assert state.traceparents == [("/token", caller), (ENROLL_PATH, caller), (ENROLL_PATH, None)]


async def test_oauth2_token_is_reused_until_it_is_due_then_renewed(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    # Renewed a tenth of its life early: due 1.8 s after it is issued.
    state.expires_in = 2
    async with connected(oauth_settings(server)) as c:
        client = CpmcsClient(c)
        await client.enroll_program(enroll_body("D-1"))
        await client.enroll_program(enroll_body("D-2"))
        assert state.issued == 1
        await asyncio.sleep(2.0)
        await client.enroll_program(enroll_body("D-3"))

    assert state.issued == 2
    assert state.api_tokens == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


async def test_oauth2_a_401_fetches_a_fresh_token_and_retries_once(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    calls = Calls()
    async with connected(oauth_settings(server)) as c:
        client = CpmcsClient(c, calls)
        await client.enroll_program(enroll_body("R-1"))
        # The server forgets tok-1 (revoked, or restarted): the next call meets a 401.
        with state.lock:
            state.accepted.clear()
        answer = await client.enroll_program(enroll_body("R-2"))

    assert answer.status == "PENDING"
    assert state.issued == 2
    assert state.api_tokens == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    # The retry is part of the one call the flow made.
    assert [r.http_status for r in calls.records] == [200, 200]


async def test_oauth2_an_api_that_keeps_refusing_is_retried_only_once(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    state.refuse_api = True
    calls = Calls()
    async with connected(oauth_settings(server)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("K-1"))

    assert caught.value.http_status == 401
    assert state.issued == 2
    assert state.api_calls == 2
    assert calls.one().http_status == 401


@pytest.mark.parametrize("secret", ["wrong-client-s3cret", CLIENT_SECRET])
async def test_oauth2_a_refusing_token_endpoint_is_a_fault_without_the_secret(
    oauth: tuple[ServerThread, OAuthState], secret: str
) -> None:
    server, state = oauth
    # Either the secret is wrong, or the token server refuses a right one (client disabled).
    state.refuse_tokens = secret == CLIENT_SECRET
    calls = Calls()
    async with connected(oauth_settings(server, secret)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("T-1"))

    fault = caught.value
    assert "token endpoint" in str(fault)
    assert "HTTP 401" in str(fault)
    assert secret not in str(fault)
    assert state.api_calls == 0
    record = calls.one()
    assert record.error == str(fault)
    assert secret not in repr(record)


async def test_oauth2_an_unreachable_token_endpoint_is_a_fault(
    oauth: tuple[ServerThread, OAuthState],
) -> None:
    server, state = oauth
    settings = connection_settings(
        server.url,
        auth={
            "type": "oauth2",
            "token_url": f"http://{LOOPBACK}:{free_port()}/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    async with connected(settings) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c).enroll_program(enroll_body("U-1"))

    assert caught.value.unreachable
    assert "token endpoint" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    assert state.api_calls == 0


# --- TLS with a private CA --------------------------------------------------------------


class TlsServerThread:
    """uvicorn with TLS on loopback in a daemon thread (ServerThread serves plain HTTP only)."""

    def __init__(self, app: FastAPI, certfile: Path, keyfile: Path) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            ssl_certfile=str(certfile),
            ssl_keyfile=str(keyfile),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._listener]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the TLS server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._listener.close()


@dataclass(frozen=True)
class TlsServer:
    url: str
    ca_pem: Path


@pytest.fixture(scope="module")
def tls_cpmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca.cert_pem.write_to_path(ca_pem)
    cert.private_key_pem.write_to_path(key_pem)
    for n, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(cert_pem, append=n > 0)
    server = TlsServerThread(create_cpmcs_app(seed=5), cert_pem, key_pem)
    server.start()
    try:
        yield TlsServer(url=server.url, ca_pem=ca_pem)
    finally:
        server.stop()


async def test_tls_with_the_ca_bundle_succeeds(tls_cpmcs: TlsServer) -> None:
    settings = connection_settings(tls_cpmcs.url, ca_bundle=str(tls_cpmcs.ca_pem))
    async with connected(settings) as c:
        answer = await CpmcsClient(c).enroll_program(enroll_body("TLS-OK"))

    assert answer.status == "PENDING"


async def test_tls_without_the_ca_bundle_fails_certificate_verification(
    tls_cpmcs: TlsServer,
) -> None:
    calls = Calls()
    async with connected(connection_settings(tls_cpmcs.url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("TLS-NO-CA"))

    assert caught.value.unreachable
    assert "certificate verify failed" in str(caught.value).lower()
    assert calls.one().http_status is None


def test_a_ca_bundle_that_does_not_exist_is_refused_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        connection_settings("https://127.0.0.1:1", ca_bundle=str(tmp_path / "nope.pem"))


def test_a_ca_bundle_that_holds_no_certificate_is_refused_by_the_settings(
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n", encoding="utf-8")

    with pytest.raises(ValueError, match="cannot be read as PEM certificates"):
        connection_settings("https://127.0.0.1:1", ca_bundle=str(not_pem))


# --- How answers are sorted into business errors and technical faults --------------------


@dataclass
class Script:
    """What the scripted server answers to the next call."""

    status: int = 200
    body: bytes = b"{}"
    media_type: str = "application/json"


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[tuple[ServerThread, Script]]:
    script = Script()
    app = FastAPI()

    @app.post(ENROLL_PATH)
    async def answer() -> Response:
        return Response(script.body, status_code=script.status, media_type=script.media_type)

    with ServerThread(app, name="scripted server") as server:
        yield server, script


def cpmcs_error_body(status: str, number: int, message: str) -> bytes:
    exception = {"messageCategory": 11101, "messageNumber": number, "message": message}
    return json.dumps({"status": status, "exception": exception}).encode()


async def answer_to(
    scripted: tuple[ServerThread, Script], status: int, body: bytes, media_type: str
) -> tuple[BaseException, Activity]:
    server, script = scripted
    script.status, script.body, script.media_type = status, body, media_type
    calls = Calls()
    async with connected(connection_settings(server.url)) as c:
        with pytest.raises((BusinessError, TechnicalFault)) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("S-1"))
    return caught.value, calls.one()


@pytest.mark.parametrize(
    ("status", "cpmcs_status", "number", "message"),
    [
        (400, "ERROR", 10589, "Enrollment already exists for transaction S-1"),
        (422, "VAL-ERROR", 10010, "Program NOSUCH is not defined"),
        (400, "VAL-ERROR", 10001, "transactionId is required"),
    ],
)
async def test_a_cpmcs_error_body_is_a_business_error(
    scripted_server: tuple[ServerThread, Script],
    status: int,
    cpmcs_status: str,
    number: int,
    message: str,
) -> None:
    body = cpmcs_error_body(cpmcs_status, number, message)

    error, record = await answer_to(scripted_server, status, body, "application/json")

    assert isinstance(error, BusinessError)
    assert (error.status, error.message_number, error.http_status) == (
        cpmcs_status,
        number,
        status,
    )
    assert error.message == message
    assert str(error) == f"CPMCS refused enrollProgram: {cpmcs_status} {number}: {message}"
    assert (record.target, record.operation, record.http_status) == (
        "CPMCS",
        "enrollProgram",
        status,
    )
    assert record.error == str(error)


@pytest.mark.parametrize(
    ("status", "body", "media_type", "says"),
    [
        (400, b"<html><body>Bad Request</body></html>", "text/html", "HTTP 400"),
        (400, b'{"status": "FAULT", "detail": "nope"}', "application/json", "HTTP 400"),
        (422, b"not json at all", "text/plain", "HTTP 422"),
        (500, b'{"status": "FAULT"}', "application/json", "HTTP 500"),
        (503, b"Service Unavailable", "text/plain", "HTTP 503"),
        (401, b'{"error": "unauthorized"}', "application/json", "credentials"),
        (403, b'{"error": "forbidden"}', "application/json", "credentials"),
        (404, b"Not Found", "text/plain", "HTTP 404"),
    ],
)
async def test_other_error_answers_are_technical_faults(
    scripted_server: tuple[ServerThread, Script],
    status: int,
    body: bytes,
    media_type: str,
    says: str,
) -> None:
    fault, record = await answer_to(scripted_server, status, body, media_type)

    assert isinstance(fault, TechnicalFault)
    assert fault.http_status == status
    assert says in str(fault)
    assert f"HTTP {status}" in str(fault)
    assert not fault.unreachable
    assert not fault.timed_out
    assert (record.target, record.operation, record.http_status) == (
        "CPMCS",
        "enrollProgram",
        status,
    )
    assert record.method == "POST"
    assert record.path == ENROLL_PATH
    assert record.error == str(fault)


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b'{"enrollment": "E-1"}', "application/json"),
        (b'{"enrollmentId": 12, "status": null}', "application/json"),
        (b"<html>OK</html>", "text/html"),
        (b"", "application/json"),
    ],
)
async def test_a_200_the_hub_cannot_read_is_a_technical_fault(
    scripted_server: tuple[ServerThread, Script], body: bytes, media_type: str
) -> None:
    server, script = scripted_server
    script.status, script.body, script.media_type = 200, body, media_type
    async with connected(connection_settings(server.url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c).enroll_program(enroll_body("S-2"))

    assert "cannot read" in str(caught.value)
    assert "enrollProgram" in str(caught.value)
    assert caught.value.http_status == 200


async def test_the_activity_of_an_unreadable_answer_carries_the_error(
    scripted_server: tuple[ServerThread, Script],
) -> None:
    server, script = scripted_server
    script.status, script.body, script.media_type = 200, b'{"unexpected": true}', "application/json"
    calls = Calls()
    async with connected(connection_settings(server.url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("S-3"))

    assert calls.one().error == str(caught.value)


# --- Faults of the CPMCS simulator ------------------------------------------------------


@pytest.fixture(scope="module")
def cpmcs_server() -> Iterator[ServerThread]:
    with ServerThread(create_cpmcs_app(seed=11), name="CPMCS simulator") as server:
        yield server


@pytest.fixture
def cpmcs_sim(cpmcs_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cpmcs_server.url, timeout=10) as client:
        client.delete("/_sim/state").raise_for_status()
        client.delete("/_sim/faults").raise_for_status()
        yield client
        client.delete("/_sim/faults").raise_for_status()


async def test_the_simulators_business_errors_are_business_errors(
    cpmcs_server: ServerThread, cpmcs_sim: httpx.Client
) -> None:
    calls = Calls()
    async with connected(connection_settings(cpmcs_server.url)) as c:
        client = CpmcsClient(c, calls)
        first = await client.enroll_program(enroll_body("SIM-1"))
        with pytest.raises(BusinessError) as again:
            await client.enroll_program(enroll_body("SIM-1"))
        with pytest.raises(BusinessError) as unknown:
            await client.enroll_program(enroll_body("SIM-2", program="NOSUCH"))

    assert (again.value.http_status, again.value.status) == (400, "ERROR")
    assert again.value.message_number == 10589
    assert first.enrollmentId in again.value.message
    assert (unknown.value.http_status, unknown.value.status) == (422, "VAL-ERROR")
    assert unknown.value.message_number == 10010
    assert [r.http_status for r in calls.records] == [200, 400, 422]
    assert [r.error is None for r in calls.records] == [True, False, False]


@pytest.mark.parametrize("status", [500, 503])
async def test_a_simulated_server_error_is_a_technical_fault(
    cpmcs_server: ServerThread, cpmcs_sim: httpx.Client, status: int
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"status_code": status}).raise_for_status()
    calls = Calls()
    async with connected(connection_settings(cpmcs_server.url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("F-1"))

    assert caught.value.http_status == status
    assert f"HTTP {status}" in str(caught.value)
    assert calls.one().http_status == status


async def test_a_read_timeout_is_a_timed_out_fault(
    cpmcs_server: ServerThread, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"latency_ms": 1000}).raise_for_status()
    settings = connection_settings(cpmcs_server.url, timeouts={"connect": 2, "read": 0.3})
    calls = Calls()
    async with connected(settings) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("SLOW-1"))

    assert caught.value.timed_out
    assert not caught.value.unreachable
    assert "did not answer enrollProgram within 0.3 s" in str(caught.value)
    record = calls.one()
    assert record.http_status is None
    assert record.error == str(caught.value)
    assert record.duration_ms < 1000


async def test_a_simulated_outage_is_a_technical_fault(
    cpmcs_server: ServerThread, cpmcs_sim: httpx.Client
) -> None:
    cpmcs_sim.put("/_sim/faults", json={"down": True}).raise_for_status()
    calls = Calls()
    async with connected(connection_settings(cpmcs_server.url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("DOWN-1"))

    # The simulator starts an answer and drops the connection before its body.
    assert "CPMCS broke the connection during enrollProgram" in str(caught.value)
    assert caught.value.unreachable
    assert caught.value.http_status is None
    assert calls.one().error == str(caught.value)


async def test_a_closed_port_is_an_unreachable_fault() -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    calls = Calls()
    async with connected(connection_settings(url)) as c:
        with pytest.raises(TechnicalFault) as caught:
            await CpmcsClient(c, calls).enroll_program(enroll_body("GONE-1"))

    assert caught.value.unreachable
    assert not caught.value.timed_out
    assert caught.value.http_status is None
    assert f"CPMCS unreachable at {url}" in str(caught.value)
    record = calls.one()
    assert (record.target, record.operation, record.http_status) == (
        "CPMCS",
        "enrollProgram",
        None,
    )
    assert record.error == str(caught.value)


# --- DermsClient: the Routing lookup picks the connection --------------------------------


@pytest.fixture(scope="module")
def derms_pair() -> Iterator[tuple[ServerThread, ServerThread]]:
    with (
        ServerThread(create_derms_app(), name="DERMS north") as north,
        ServerThread(create_derms_app(), name="DERMS default") as default,
    ):
        yield north, default


def received(server: ServerThread) -> dict[str, list[dict[str, Any]]]:
    answer = httpx.get(f"{server.url}/_sim/state/received", timeout=10)
    answer.raise_for_status()
    body: dict[str, list[dict[str, Any]]] = answer.json()
    return body


@pytest.fixture
def routed_lookups(derms_pair: tuple[ServerThread, ServerThread]) -> Lookups:
    for server in derms_pair:
        httpx.delete(f"{server.url}/_sim/state", timeout=10).raise_for_status()
    shipped = load_lookups(LOOKUPS_DIR)
    routing = Lookup(
        name="Routing",
        columns=("division", "connection"),
        rows={"NORTH": "north", "SOUTH": "south", "*": "default"},
    )
    return Lookups(tables={**shipped.tables, "Routing": routing})


@asynccontextmanager
async def derms_client(
    derms_pair: tuple[ServerThread, ServerThread], lookups: Lookups, calls: Calls
) -> AsyncIterator[DermsClient]:
    north, default = derms_pair
    connections = {
        "north": HttpConnection("DERMS north", connection_settings(north.url)),
        "default": HttpConnection("DERMS default", connection_settings(default.url)),
    }
    try:
        yield DermsClient(connections, lookups, calls)
    finally:
        for connection in connections.values():
            await connection.aclose()


async def test_a_division_with_a_route_reaches_its_derms(
    derms_pair: tuple[ServerThread, ServerThread], routed_lookups: Lookups
) -> None:
    north, default = derms_pair
    calls = Calls()
    async with derms_client(derms_pair, routed_lookups, calls) as derms:
        ack = await derms.send(
            "enroll", AnyJson({"dacsMessageId": "N-1"}), AnyJson, division="NORTH"
        )

    assert ack.root["MsgAck"]["ackType"] == "SUCCESS"
    assert received(north) == {"/enroll": [{"dacsMessageId": "N-1"}]}
    assert received(default) == {}
    assert calls.one().target == "DERMS north"


@pytest.mark.parametrize("division", ["WEST", None, ""])
async def test_a_division_without_a_route_goes_to_the_default(
    derms_pair: tuple[ServerThread, ServerThread],
    routed_lookups: Lookups,
    division: str | None,
) -> None:
    north, default = derms_pair
    calls = Calls()
    async with derms_client(derms_pair, routed_lookups, calls) as derms:
        await derms.send("enroll", AnyJson({"dacsMessageId": "W-1"}), AnyJson, division=division)

    assert received(default) == {"/enroll": [{"dacsMessageId": "W-1"}]}
    assert received(north) == {}
    assert calls.one().target == "DERMS default"


async def test_a_route_to_an_undefined_connection_is_a_configuration_error_naming_it(
    derms_pair: tuple[ServerThread, ServerThread], routed_lookups: Lookups
) -> None:
    north, default = derms_pair
    calls = Calls()
    async with derms_client(derms_pair, routed_lookups, calls) as derms:
        with pytest.raises(ConfigurationError) as caught:
            await derms.send("enroll", AnyJson({"dacsMessageId": "S-1"}), AnyJson, division="SOUTH")

    assert "'south'" in str(caught.value)
    assert "'SOUTH'" in str(caught.value)
    assert received(north) == {}
    assert received(default) == {}
    assert calls.records == []


# --- Streamed uploads -------------------------------------------------------------------


@asynccontextmanager
async def deaf_server() -> AsyncIterator[str]:
    """A system that takes the request line and headers, then never reads or answers."""
    held: list[asyncio.StreamWriter] = []

    async def take_headers_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        held.append(writer)

    server = await asyncio.start_server(take_headers_only, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_an_upload_the_system_stops_taking_ends_as_a_timeout() -> None:
    async def endless_file() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024 * 1024

    calls = Calls()
    async with deaf_server() as url, connected(connection_settings(url), "DERMS default") as derms:
        with pytest.raises(TechnicalFault) as caught:
            await derms.upload(
                "deviceScore",
                "/device-score/SDCSE_1.csv",
                endless_file(),
                content_type="application/octet-stream",
                observer=calls,
            )

    assert caught.value.timed_out
    assert str(caught.value) == "DERMS default did not answer deviceScore within 3 s"
    assert calls.one().error == str(caught.value)


# --- Redirects ------------------------------------------------------------------------------


async def test_a_redirect_is_never_followed_so_the_body_goes_nowhere_else() -> None:
    elsewhere_received: list[bytes] = []
    elsewhere = FastAPI()

    @elsewhere.post("/{path:path}")
    async def keep(request: Request) -> Response:
        elsewhere_received.append(await request.body())
        return JSONResponse({"enrollmentId": "STOLEN"})

    with ServerThread(elsewhere, name="another host") as other:
        redirecting = FastAPI()

        @redirecting.post(ENROLL_PATH)
        async def redirect() -> Response:
            return Response(status_code=307, headers={"Location": f"{other.url}/stolen"})

        with ServerThread(redirecting, name="redirecting CPMCS") as server:
            calls = Calls()
            async with connected(connection_settings(server.url)) as c:
                with pytest.raises(TechnicalFault) as caught:
                    await CpmcsClient(c, calls).enroll_program(enroll_body("R-1"))

    assert elsewhere_received == []
    assert "redirect (HTTP 307), which the hub never follows" in str(caught.value)
    assert calls.one().http_status == 307
