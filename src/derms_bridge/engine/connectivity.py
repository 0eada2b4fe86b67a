"""Whether each outside system answers: a TCP connect with a short timeout, nothing sent.

A connect says the system is reachable without logging in to it, so the check needs
no credential and leaves nothing in the other system's logs but a closed connection.
CPMCS's file stores are the exception: their adapters log in (`FileStorage.check`),
since a store that accepts connections but refuses the hub's login is not usable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from derms_bridge.connectors.file_storage.interface import FileStorage, FileStorages
from derms_bridge.settings import Settings
from derms_bridge.settings.connections import Connection


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
    name: str
    kind: str
    #: Where the system is, with no credential in it.
    address: str
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


def endpoints_of(settings: Settings) -> list[Endpoint]:
    """CPMCS, each DERMS connection and the SMTP server (the file stores: `check_store`)."""
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
        name=endpoint.name,
        kind=endpoint.kind,
        address=endpoint.address,
        reachable=reachable,
        detail=detail,
        elapsed_ms=_elapsed_ms(started),
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def check_store(name: str, store: FileStorage, seconds: float) -> Reachability:
    """The store reached and logged in to within `seconds`; one that hangs is cut off."""
    started = time.perf_counter()
    reachable, detail = True, "logged in"
    try:
        async with asyncio.timeout(seconds):
            await store.check()
    except TimeoutError:
        reachable, detail = False, f"no answer within {seconds:g} s"
    except Exception as exc:
        # The adapters' errors begin with the store's description, shown beside it already.
        reachable = False
        detail = str(exc).removeprefix(f"{store.description}: ") or type(exc).__name__
    return Reachability(
        name=name,
        kind="file store",
        address=store.description,
        reachable=reachable,
        detail=detail,
        elapsed_ms=_elapsed_ms(started),
    )


async def probe_all(
    endpoints: Sequence[Endpoint],
    stores: FileStorages | None = None,
    seconds: float = 2.0,
    store_seconds: float = 3.0,
) -> list[Reachability]:
    """Every endpoint and store at once, so that the slowest one sets the time it takes."""
    checks = [probe(endpoint, seconds) for endpoint in endpoints]
    if stores is not None:
        checks.append(check_store("CPMCS FTP server", stores.ftp, store_seconds))
        checks.append(check_store("CPMCS object storage", stores.object_storage, store_seconds))
    return list(await asyncio.gather(*checks))
