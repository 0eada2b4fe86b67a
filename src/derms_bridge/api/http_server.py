"""The HTTP server's protocol: uvicorn's httptools protocol with bounded request heads.

httptools keeps a request's head (request line and headers) in memory until it ends,
however long: a client sending 100 MB of headers held the process for seconds. Here a
head over `MAX_HEAD_BYTES`, or with more than `MAX_HEADERS` headers, is answered 431 and
the connection closed, before more of it is read. No client of the hub sends heads of
more than a few KiB (a bearer token, a traceparent, a cookie).
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from derms_bridge.schemas.problems import PROBLEM_JSON, problem_body

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
