"""The HTTP server: uvicorn, which stops the hub's workers at its signal, and its httptools
protocol with bounded request heads.

httptools keeps a request's head (request line and headers) in memory until it ends,
however long: a client sending 100 MB of headers held the process for seconds. Here a
head over `MAX_HEAD_BYTES`, or with more than `MAX_HEADERS` headers, is answered 431 and
the connection closed, before more of it is read. No client of the hub sends heads of
more than a few KiB (a bearer token, a traceparent, a cookie).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from derms_bridge.engine.background import Shutdown
from derms_bridge.schemas.problems import PROBLEM_JSON, problem_body

#: uvicorn.run's exit code for a server that could not start (its port taken, say).
STARTUP_FAILURE = 3

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100


def _too_large(detail: str) -> bytes:
    body = json.dumps(problem_body(431, detail)).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: " + PROBLEM_JSON.encode() + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = False
        self._heads_ended = 0
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        heads_ended = self._heads_ended
        super().data_received(data)
        if self._reading_head and self._heads_ended == heads_ended:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self._refused:
                self._refuse(f"the request's headers are over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            if not self._refused:
                self._refuse(f"the request has more than {MAX_HEADERS} headers")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_ended += 1
        if self._refused:
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse(self, detail: str) -> None:
        self._refused = True
        self.transport.write(_too_large(detail))
        self.transport.close()


class HubServer(uvicorn.Server):
    """uvicorn's server, which at SIGTERM or SIGINT also begins the hub's shutdown at once:
    the workers stop claiming while the requests in progress end, not after. Its config's
    `timeout_graceful_shutdown` bounds how long those requests may take."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            # Called as a signal handler, between any two steps of the loop.
            self._loop.call_soon_threadsafe(self._shutdown.begin)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn raises the signals again once it has stopped, and the process
                # would die of SIGTERM: a stop the hub has carried out is an exit 0.
                self._captured_signals.clear()


def run_server(
    config: uvicorn.Config, shutdown: Shutdown, sockets: list[socket.socket] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, on `sockets` when given (a parent's, shared); exit
    STARTUP_FAILURE if the server could not start. The requests in progress at a stop get
    the workers' grace to end, not for ever."""
    config.timeout_graceful_shutdown = math.ceil(shutdown.grace_seconds)
    server = HubServer(config, shutdown)
    server.run(sockets)
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
