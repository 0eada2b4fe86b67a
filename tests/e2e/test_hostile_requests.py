"""What a real `derms-bridge serve` does with requests no honest client sends: huge or
countless headers are answered 431 at once and the connection closed while other callers go
on; X-Forwarded-* is believed only from the proxies the settings name."""

from __future__ import annotations

import contextlib
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import yaml

from derms_bridge.api.http_server import MAX_HEAD_BYTES, MAX_HEADERS
from derms_bridge.sandbox.servers import LOOPBACK, ServerThread
from derms_bridge.sandbox.smtp_sink import SmtpSink
from tests.e2e.test_file_faults import (  # the fixtures as well, for this module's tests
    Processes,
    caller_hashes,  # noqa: F401
    processes,  # noqa: F401
    serve,
    write_settings,
)
from tests.ports import ports_to_bind


def answer_to(port: int, head: bytes, *, chunk: int = 64 * 1024, total: int = 0) -> bytes:
    """What the hub answers to `head` followed by `total` bytes of one header's value."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as connection:
        connection.sendall(head)
        # The hub may close while we still send: what it answered is read all the same.
        with contextlib.suppress(OSError):
            for _ in range(total // chunk):
                connection.sendall(b"a" * chunk)
        answer = b""
        with contextlib.suppress(OSError):
            while data := connection.recv(65536):
                answer += data
        return answer


def test_huge_or_countless_headers_are_refused_and_others_go_on(
    processes: Processes,  # noqa: F811
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = write_settings(
        tmp_path / "hub.yaml",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        cpmcs=cpmcs_server,
        derms=derms_server,
        mailbox=mailbox,
        hashes=caller_hashes,
        segments={},
    )
    port = ports_to_bind()
    serve(processes, settings, port)

    huge = answer_to(
        port, b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Huge: ", total=20 * 1024 * 1024
    )
    assert huge.startswith(b"HTTP/1.1 431 "), huge[:200]
    assert b"application/problem+json" in huge
    assert f"over {MAX_HEAD_BYTES} bytes".encode() in huge

    many = b"".join(b"X-Header-%d: x\r\n" % number for number in range(MAX_HEADERS + 1))
    countless = answer_to(port, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n" + many + b"\r\n")
    assert countless.startswith(b"HTTP/1.1 431 "), countless[:200]
    assert f"more than {MAX_HEADERS} headers".encode() in countless

    # Ordinary requests on one kept-alive connection, bodies larger than any head allowed.
    with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10) as client:
        for _ in range(3):
            reply = client.post("/healthz", content=b"x" * (4 * MAX_HEAD_BYTES))
            assert reply.status_code == 405, reply.text
        assert client.get("/healthz").json() == {"status": "ok"}


def test_forwarded_headers_are_believed_only_from_the_proxies_the_settings_name(
    processes: Processes,  # noqa: F811
    cpmcs_server: ServerThread,
    derms_server: ServerThread,
    mailbox: SmtpSink,
    caller_hashes: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    def cookie_over_claimed_tls(trusted_proxies: list[str]) -> str:
        settings_file = write_settings(
            tmp_path / "hub.yaml",
            database_url=f"sqlite:///{tmp_path / 'hub.db'}",
            cpmcs=cpmcs_server,
            derms=derms_server,
            mailbox=mailbox,
            hashes=caller_hashes,
            segments={},
        )
        settings: dict[str, Any] = yaml.safe_load(settings_file.read_text())
        settings["console"] = {"session_secret": "s" * 32}
        settings["server"] = {"trusted_proxies": trusted_proxies}
        settings_file.write_text(yaml.safe_dump(settings))
        port = ports_to_bind()
        hub = serve(processes, settings_file, port)
        try:
            page = httpx.get(
                f"http://{LOOPBACK}:{port}/console/login",
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
                timeout=10,
            )
            assert page.status_code == 200, page.text
            return page.headers["set-cookie"]
        finally:
            hub.process.send_signal(signal.SIGTERM)
            hub.process.wait(timeout=30)

    # A local process claiming TLS is not believed: the cookie stays usable over plain HTTP.
    assert "secure" not in cookie_over_claimed_tls([]).lower()
    # The proxy the settings name is believed: it ended TLS, so the cookie is Secure.
    assert "secure" in cookie_over_claimed_tls(["127.0.0.1/32"]).lower()
