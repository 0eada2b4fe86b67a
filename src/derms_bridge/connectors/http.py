"""An HTTP connection to one outside system, with its errors sorted the reference's way.

Business errors (the target's own refusal) become BusinessError; everything that
keeps an answer from arriving or being read becomes TechnicalFault.

The client is aiohttp: with many calls in flight on one pooled client it costs a
fraction of httpx's time per call (bench/enrollment_batch.py; docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from derms_bridge import tracing
from derms_bridge.errors import BusinessError, TechnicalFault
from derms_bridge.schemas.ops import Activity
from derms_bridge.settings.connections import BasicAuth, Connection, OAuth2ClientCredentials


@dataclass(frozen=True)
class Answer:
    """What a system answered: its status and its whole body."""

    status: int
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


CallObserver = Callable[[Activity], None]
BusinessErrorReader = Callable[[Answer], BusinessError | None]
M = TypeVar("M", bound=BaseModel)

#: Seconds an idle connection to a target is kept for the next call: below the idle timeout
#: of the servers in front of the targets (uvicorn's 5 s, the least), so that the hub closes
#: it first. A connection the server closed just as the hub sent a call on it failed that
#: call ("Can not write request body"), which happened under a burst after a quiet moment.
IDLE_CONNECTION_SECONDS = 4.0
T = TypeVar("T")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


class OAuth2Token:
    """A bearer token from a client-credentials grant, fetched once and reused until due."""

    # Renew early (a tenth of its life, at most 30 s) so that a token never expires
    # between being sent and being checked.
    EARLY_RENEWAL_SECONDS = 30.0

    def __init__(self, system: str, settings: OAuth2ClientCredentials) -> None:
        self._endpoint = f"{system} token endpoint {settings.token_url}"
        self._settings = settings
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, session: aiohttp.ClientSession, trace: Mapping[str, str]) -> str:
        form = {"grant_type": "client_credentials"}
        if self._settings.scope:
            form["scope"] = self._settings.scope
        headers = {
            **trace,
            "Authorization": aiohttp.encode_basic_auth(
                self._settings.client_id, self._settings.client_secret.get_secret_value()
            ),
        }
        try:
            async with session.post(
                str(self._settings.token_url),
                data=form,
                headers=headers,
                allow_redirects=False,
            ) as response:
                status, body = response.status, await response.read()
        except TimeoutError:
            raise TechnicalFault(
                f"{self._endpoint} did not answer in time", timed_out=True
            ) from None
        except aiohttp.ClientError as exc:
            raise TechnicalFault(
                f"{self._endpoint} unreachable: {_reason(exc)}", unreachable=True
            ) from None
        if status != 200:
            raise TechnicalFault(
                f"{self._endpoint} refused the client credentials (HTTP {status})",
                http_status=status,
            )
        try:
            payload = jsonlib.loads(body)
            token = str(payload["access_token"])
            lifetime = float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TechnicalFault(f"{self._endpoint} answered without an access_token") from None
        margin = min(self.EARLY_RENEWAL_SECONDS, lifetime / 10)
        self._token = token
        self._expires_at = time.monotonic() + lifetime - margin
        return token

    async def header(
        self, session: aiohttp.ClientSession, trace: Mapping[str, str], *, renew: bool = False
    ) -> str:
        """The Authorization header; a token request, when one is due, sends `trace` (the
        trace headers of the call it is made for)."""
        async with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires_at:
                return f"Bearer {await self._fetch(session, trace)}"
            return f"Bearer {self._token}"


def _ssl_for(settings: Connection) -> ssl.SSLContext | bool:
    """True: aiohttp's verifying context, made once when aiohttp is imported. A context of
    the connection's own loads the system's CAs, 20-45 ms, so it is made only for a CA
    bundle, and when the connection is, not in the middle of its first call."""
    if settings.ca_bundle is None:
        return True
    return ssl.create_default_context(cafile=str(settings.ca_bundle))


class HttpConnection:
    """One pooled client for one configured system; shared by every flow run."""

    def __init__(
        self, system: str, settings: Connection, *, watcher: CallObserver | None = None
    ) -> None:
        self.system = system
        # Told of every call besides its own observer, e.g. to count them all once.
        self._watcher = watcher
        self.base_url = str(settings.base_url).rstrip("/")
        self._host = settings.base_url.host or ""
        self.read_timeout = settings.timeouts.read
        self.connect_timeout = settings.timeouts.connect
        self._settings = settings
        self._headers = {"Accept": "application/json"}
        if isinstance(settings.auth, BasicAuth):
            self._headers["Authorization"] = aiohttp.encode_basic_auth(
                settings.auth.username, settings.auth.password.get_secret_value()
            )
        self._oauth = (
            OAuth2Token(system, settings.auth)
            if isinstance(settings.auth, OAuth2ClientCredentials)
            else None
        )
        self._ssl = _ssl_for(settings)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop that runs it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._settings.max_connections,
                    ssl=self._ssl,
                    keepalive_timeout=IDLE_CONNECTION_SECONDS,
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
                ),
                headers=self._headers,
            )
        return self._session

    def _span(self, operation: str, method: str, path: str) -> tracing.OutboundCall:
        """The call's client span, named by the system and the operation: the method, the
        path and the configured base URL's host, never a credential or the body."""
        return tracing.outbound(
            f"{self.system} {operation}",
            {
                "http.request.method": method,
                "server.address": self._host,
                "url.path": path.split("?", 1)[0],
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(
        self, method: str, path: str, json_body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        headers = {**headers}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        # No redirect is followed: it would carry the body, and perhaps a credential, to
        # wherever the answer points, outside the configured host.
        async with self._client().request(
            method,
            self.base_url + path,
            data=json_body,
            headers=headers,
            allow_redirects=False,
        ) as response:
            return Answer(status=response.status, body=await response.read())

    async def _exchange(
        self,
        operation: str,
        method: str,
        path: str,
        json_body: bytes | None,
        trace: Mapping[str, str],
    ) -> Answer:
        """One request and its whole answer, sending `trace` (the call's trace headers);
        what stops it becomes a TechnicalFault."""
        with self._faults(operation):
            if self._oauth is None:
                return await self._send(method, path, json_body, trace)
            bearer = await self._oauth.header(self._client(), trace)
            answer = await self._send(method, path, json_body, {**trace, "Authorization": bearer})
            if answer.status == 401:
                bearer = await self._oauth.header(self._client(), trace, renew=True)
                answer = await self._send(
                    method, path, json_body, {**trace, "Authorization": bearer}
                )
            return answer

    @contextmanager
    def _faults(self, operation: str) -> Iterator[None]:
        """Whatever keeps an answer from arriving, as a TechnicalFault saying what it was."""
        try:
            yield
        except aiohttp.ClientConnectorError as exc:
            raise TechnicalFault(
                f"{self.system} unreachable at {self.base_url}: {_reason(exc)}",
                unreachable=True,
            ) from None
        except aiohttp.ConnectionTimeoutError:
            raise TechnicalFault(
                f"{self.system} unreachable at {self.base_url}: no connection within "
                f"{self.connect_timeout:g} s",
                unreachable=True,
            ) from None
        except TimeoutError:
            raise TechnicalFault(
                f"{self.system} did not answer {operation} within {self.read_timeout:g} s",
                timed_out=True,
                answer_lost=True,
            ) from None
        except aiohttp.ClientError as exc:
            raise TechnicalFault(
                f"{self.system} broke the connection during {operation}: {_reason(exc)}",
                unreachable=True,
                answer_lost=True,
            ) from None

    async def upload(
        self,
        operation: str,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        observer: CallObserver | None,
    ) -> int:
        """POST the chunks as the body as they come (chunked, never buffered whole); the
        HTTP status the system answered. A body cannot be sent twice, so an OAuth2 token is
        fetched before it and a 401 is not retried."""
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        with self._span(operation, "POST", path) as span:
            headers = {**span.headers, "Content-Type": content_type}
            try:
                with self._faults(operation):
                    if self._oauth is not None:
                        headers["Authorization"] = await self._oauth.header(
                            self._client(), span.headers
                        )
                    # aiohttp's read timeout covers neither a body the system stops taking
                    # nor (seen with a dropped connection) every wait for its answer: the
                    # upload ends when no chunk has gone and no answer has come for
                    # read_timeout.
                    loop = asyncio.get_running_loop()
                    async with asyncio.timeout(None) as stalled:

                        def progressed() -> None:
                            stalled.reschedule(loop.time() + self.read_timeout)

                        async def paced() -> AsyncIterator[bytes]:
                            async for chunk in chunks:
                                progressed()
                                yield chunk

                        progressed()
                        async with self._client().post(
                            self.base_url + path,
                            data=paced(),
                            headers=headers,
                            allow_redirects=False,
                        ) as response:
                            progressed()
                            status = response.status
                            await response.read()
                if status in (401, 403):
                    raise TechnicalFault(
                        f"{self.system} refused the hub's credentials for {operation} "
                        f"(HTTP {status})",
                        http_status=status,
                    )
                if status >= 300:
                    error = f"{self.system} answered HTTP {status} to {operation}"
                return status
            except TechnicalFault as fault:
                error = str(fault)
                raise
            finally:
                span.answered(status, _error_type(status, error))
                if observer is not None:
                    observer(
                        Activity(
                            target=self.system,
                            operation=operation,
                            method="POST",
                            path=path,
                            http_status=status,
                            duration_ms=(time.perf_counter() - started) * 1000,
                            error=error,
                            at=datetime.now(UTC),
                        )
                    )

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        read: Callable[[Answer], T],
        observer: CallObserver | None,
        json_body: bytes | None = None,
        business_error: BusinessErrorReader | None = None,
    ) -> T:
        """Send one request, with `json_body` (JSON already written) as its body if any, and
        read its answer with `read`; a fault or a business error raises, and either way the
        call is reported to `observer` once."""
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        with self._span(operation, method, path) as span:
            try:
                answer = await self._exchange(operation, method, path, json_body, span.headers)
                status = answer.status
                if status in (401, 403):
                    raise TechnicalFault(
                        f"{self.system} refused the hub's credentials for {operation} "
                        f"(HTTP {status})",
                        http_status=status,
                    )
                refusal = business_error(answer) if business_error and status >= 400 else None
                if refusal is not None:
                    refusal.refused_by = f"{self.system} {operation}"
                    raise refusal
                if 300 <= status < 400:
                    raise TechnicalFault(
                        f"{self.system} answered {operation} with a redirect (HTTP {status}), "
                        "which the hub never follows: check the connection's base_url "
                        f"{self.base_url}",
                        http_status=status,
                    )
                if status >= 300:
                    raise TechnicalFault(
                        f"{self.system} answered HTTP {status} to {operation}", http_status=status
                    )
                return read(answer)
            except (TechnicalFault, BusinessError) as fault:
                error = str(fault)
                raise
            finally:
                record = Activity(
                    target=self.system,
                    operation=operation,
                    method=method,
                    path=path,
                    http_status=status,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    error=error,
                    at=datetime.now(UTC),
                )
                span.answered(status, _error_type(status, error))
                if observer is not None:
                    observer(record)
                if self._watcher is not None:
                    self._watcher(record)


def _error_type(status: int | None, error: str | None) -> str | None:
    """A failed call's kind of error, as its span says it: never the error's text."""
    if error is None:
        return None
    return "http error" if status is not None else "no answer"


def model_reader(model: type[M], system: str, operation: str) -> Callable[[Answer], M]:
    """Reads an answer's body as `model`, or raises a TechnicalFault saying it cannot."""

    def read(answer: Answer) -> M:
        try:
            # An empty body reads as JSON null, which only a model that allows it accepts.
            return model.model_validate_json(answer.body or b"null")
        except ValidationError:
            raise TechnicalFault(
                f"{system} answered {operation} with HTTP {answer.status} and a body "
                "the hub cannot read",
                http_status=answer.status,
            ) from None

    return read
