"""An HTTP connection to one outside system, with its errors sorted the reference's way.

Business errors (the target's own refusal) become BusinessError; everything that
keeps an answer from arriving or being read becomes TechnicalFault.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from derms_bridge.errors import BusinessError, TechnicalFault
from derms_bridge.settings import BasicAuth, Connection, OAuth2ClientCredentials


@dataclass(frozen=True)
class CallRecord:
    """One outbound call, as the engine keeps it in an instance's activity."""

    target: str
    operation: str
    method: str
    path: str
    http_status: int | None
    duration_ms: float
    error: str | None


CallObserver = Callable[[CallRecord], None]
BusinessErrorReader = Callable[[httpx.Response], BusinessError | None]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class OAuth2ClientCredentialsAuth(httpx.Auth):
    """Bearer token from a client-credentials grant, fetched once and reused until it expires."""

    # Renew early (a tenth of its life, at most 30 s) so that a token never expires
    # between being sent and being checked.
    EARLY_RENEWAL_SECONDS = 30.0

    def __init__(
        self, system: str, settings: OAuth2ClientCredentials, timeout: httpx.Timeout
    ) -> None:
        self._endpoint = f"{system} token endpoint {settings.token_url}"
        self._settings = settings
        self._timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> str:
        form = {"grant_type": "client_credentials"}
        if self._settings.scope:
            form["scope"] = self._settings.scope
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            try:
                response = await client.post(
                    str(self._settings.token_url),
                    data=form,
                    auth=(
                        self._settings.client_id,
                        self._settings.client_secret.get_secret_value(),
                    ),
                )
            except httpx.TimeoutException:
                raise TechnicalFault(
                    f"{self._endpoint} did not answer in time", timed_out=True
                ) from None
            except httpx.HTTPError as exc:
                raise TechnicalFault(
                    f"{self._endpoint} unreachable: {_reason(exc)}", unreachable=True
                ) from None
        if response.status_code != 200:
            raise TechnicalFault(
                f"{self._endpoint} refused the client credentials (HTTP {response.status_code})",
                http_status=response.status_code,
            )
        try:
            payload = response.json()
            token = str(payload["access_token"])
            lifetime = float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TechnicalFault(f"{self._endpoint} answered without an access_token") from None
        self._token = token
        margin = min(self.EARLY_RENEWAL_SECONDS, lifetime / 10)
        self._expires_at = time.monotonic() + lifetime - margin
        return token

    async def _current_token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires_at:
                return await self._fetch()
            return self._token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self._current_token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._current_token(renew=True)}"
            yield request


def _auth_for(system: str, settings: Connection, timeout: httpx.Timeout) -> httpx.Auth | None:
    auth = settings.auth
    if isinstance(auth, BasicAuth):
        return httpx.BasicAuth(auth.username, auth.password.get_secret_value())
    if isinstance(auth, OAuth2ClientCredentials):
        return OAuth2ClientCredentialsAuth(system, auth, timeout)
    return None


def _verify_for(settings: Connection) -> ssl.SSLContext | bool:
    if settings.ca_bundle is None:
        return True
    return ssl.create_default_context(cafile=str(settings.ca_bundle))


class HttpConnection:
    """One pooled client for one configured system; shared by every flow run."""

    def __init__(self, system: str, settings: Connection) -> None:
        self.system = system
        self.base_url = str(settings.base_url).rstrip("/")
        timeout = httpx.Timeout(settings.timeouts.read, connect=settings.timeouts.connect)
        self.read_timeout = settings.timeouts.read
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            auth=_auth_for(system, settings, timeout),
            verify=_verify_for(settings),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        read: Callable[[httpx.Response], T],
        observer: CallObserver | None,
        json: Any = None,
        business_error: BusinessErrorReader | None = None,
    ) -> T:
        """Send one request and read its answer with `read`; a fault or a business error
        raises, and either way the call is reported to `observer` once."""
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            try:
                response = await self._client.request(method, path, json=json)
            except httpx.ConnectError as exc:
                raise TechnicalFault(
                    f"{self.system} unreachable at {self.base_url}: {_reason(exc)}",
                    unreachable=True,
                ) from None
            except httpx.TimeoutException:
                raise TechnicalFault(
                    f"{self.system} did not answer {operation} within {self.read_timeout:g} s",
                    timed_out=True,
                ) from None
            except httpx.TransportError as exc:
                raise TechnicalFault(
                    f"{self.system} broke the connection during {operation}: {_reason(exc)}",
                    unreachable=True,
                ) from None
            status = response.status_code
            if status in (401, 403):
                raise TechnicalFault(
                    f"{self.system} refused the hub's credentials for {operation} (HTTP {status})",
                    http_status=status,
                )
            refusal = business_error(response) if business_error and status >= 400 else None
            if refusal is not None:
                raise refusal
            if status >= 300:
                raise TechnicalFault(
                    f"{self.system} answered HTTP {status} to {operation}", http_status=status
                )
            return read(response)
        except (TechnicalFault, BusinessError) as fault:
            error = str(fault)
            raise
        finally:
            if observer is not None:
                observer(
                    CallRecord(
                        target=self.system,
                        operation=operation,
                        method=method,
                        path=path,
                        http_status=status,
                        duration_ms=(time.perf_counter() - started) * 1000,
                        error=error,
                    )
                )


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def model_reader(model: type[M], system: str, operation: str) -> Callable[[httpx.Response], M]:
    """Reads an answer's body as `model`, or raises a TechnicalFault saying it cannot."""

    def read(response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise TechnicalFault(
                f"{system} answered {operation} with HTTP {response.status_code} and a body "
                "the hub cannot read",
                http_status=response.status_code,
            ) from None

    return read
