"""Whether each outside system answers: a TCP connect with a short timeout, nothing sent.

A connect says the system is reachable without logging in to it, so the check needs
no credential and leaves nothing in the other system's logs but a closed connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from derms_bridge.settings import Connection, Settings


@dataclass(frozen=True)
class Endpoint:
    """An outside system as an operator sees it: its name, kind and an address free of secrets."""

    name: str
    kind: str
    address: str
    host: str
    port: int


@dataclass(frozen=True)
class Reachability:
    endpoint: Endpoint
    reachable: bool
    detail: str
    elapsed_ms: float


def without_secrets(url: str) -> str:
    """The URL with any user, password, query and fragment left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _http_endpoint(name: str, kind: str, url: str) -> Endpoint:
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(
        name=name,
        kind=kind,
        address=without_secrets(url),
        host=parts.hostname or "",
        port=parts.port or default_port,
    )


def _connection_endpoints(name: str, connection: Connection) -> list[Endpoint]:
    found = [_http_endpoint(name, "HTTP", str(connection.base_url))]
    if connection.auth is not None and connection.auth.type == "oauth2":
        found.append(
            _http_endpoint(f"{name} token endpoint", "OAuth2", str(connection.auth.token_url))
        )
    return found


def endpoints_of(settings: Settings, extra: Sequence[Endpoint] = ()) -> list[Endpoint]:
    """CPMCS, each DERMS connection and the SMTP server; `extra` takes the file stores'
    endpoints (FTP, SFTP, object storage) from whoever builds them."""
    found = _connection_endpoints("CPMCS", settings.connections.cpmcs)
    for name, connection in settings.connections.derms.items():
        found.extend(_connection_endpoints(f"DERMS {name}", connection))
    smtp = settings.smtp
    found.append(
        Endpoint(
            name="SMTP",
            kind=f"SMTP ({smtp.security})",
            address=f"{smtp.host}:{smtp.port}",
            host=smtp.host,
            port=smtp.port,
        )
    )
    found.extend(extra)
    return found


async def probe(endpoint: Endpoint, seconds: float) -> Reachability:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.close()
        await writer.wait_closed()
    except TimeoutError:
        return _result(endpoint, False, f"no answer within {seconds:g} s", started)
    except OSError as exc:
        return _result(endpoint, False, exc.strerror or type(exc).__name__, started)
    return _result(endpoint, True, "accepts connections", started)


def _result(endpoint: Endpoint, reachable: bool, detail: str, started: float) -> Reachability:
    return Reachability(
        endpoint=endpoint,
        reachable=reachable,
        detail=detail,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )


async def probe_all(endpoints: Sequence[Endpoint], seconds: float = 2.0) -> list[Reachability]:
    return list(await asyncio.gather(*(probe(endpoint, seconds) for endpoint in endpoints)))
