"""The file routes' multipart body (`message` JSON and `file`), parsed as it streams in.

Starlette's form parsing would spool the whole file to a temporary file before the route
runs, and the intake would then read it again. Here the body is fed to python-multipart's
streaming parser as it arrives: once the message is in hand the file's bytes go through a
small pipe to the thread that reads them, so the upload, the intake's checking and its
writes overlap, in constant memory. A file part sent before the message is spooled as
Starlette would, since the intake needs the message first.

The intake sees the end of the file only once the whole body has come and was well
formed, so it keeps nothing of a body that breaks off, grows past the limit or ends
badly: the pipe's reader gets the body's error instead.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

#: The most the message part may hold (Starlette's limit for a form field).
MESSAGE_BYTES = 1024 * 1024

#: How much of the file may wait in the pipe for its reader: the body is read no faster
#: than the intake takes it. More than the intake's reads of 1 MiB, so that one is never
#: kept waiting on room the pipe does not have.
PIPE_BYTES = 4 * 1024 * 1024

#: A file part before the message stays in memory up to this, then goes to disk.
SPOOL_BYTES = 1024 * 1024

#: The parts the routes take; any other is read past.
_Part = Literal["message", "file"]


class BadUpload(Exception):
    """The body cannot be taken: the answer's status, detail and the fields at fault."""

    def __init__(
        self, status: int, detail: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors


def _field_error(field: _Part, message: str) -> BadUpload:
    return BadUpload(422, f"{field}: {message}", [{"field": field, "message": message}])


def openapi_form(message: str, file: str) -> dict[str, Any]:
    """`openapi_extra` for a route that takes the `message` field and the `file` part: the
    body is parsed by hand, so FastAPI cannot describe it from the endpoint's parameters."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "message": {
                                "type": "string",
                                "title": "Message",
                                "description": message,
                            },
                            "file": {
                                "type": "string",
                                "title": "File",
                                "contentMediaType": "application/octet-stream",
                                "description": file,
                            },
                        },
                        "required": ["message", "file"],
                    }
                }
            },
        }
    }


@dataclass(frozen=True)
class Upload:
    #: The message part's bytes, as they came.
    message: bytes
    #: The file part, to be read by a thread (its reads block): the pipe while the body
    #: streams in, or the spooled file when the file came first.
    file: IO[bytes]


class _Pipe(io.RawIOBase):
    """Bytes put by the event loop as they arrive, read by one thread. A read waits for as
    many bytes as it asks (or the pipe's capacity), the end, or the body's failure, which
    it raises. Once the reader is done, what is put is dropped."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._capacity = capacity
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._ended = False
        self._failure: BaseException | None = None
        self._dropping = False
        self._filled = threading.Condition()
        # The bytes the waiting reader needs before it is woken; 0 while it is not waiting.
        self._wanted = 0
        self._room = asyncio.Event()
        self._writer_waits = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        with self._filled:
            wanted = min(len(target), self._capacity)
            while self._size < wanted and not self._ended and self._failure is None:
                self._wanted = wanted
                self._filled.wait()
            self._wanted = 0
            if self._failure is not None:
                raise self._failure
            taken = 0
            while self._chunks and taken < len(target):
                chunk = self._chunks[0]
                size = min(len(chunk), len(target) - taken)
                target[taken : taken + size] = chunk[:size]
                taken += size
                if size == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[size:]
            self._size -= taken
            if self._writer_waits and self._size < self._capacity:
                self._writer_waits = False
                self._loop.call_soon_threadsafe(self._room.set)
            return taken

    async def put(self, data: bytes) -> None:
        """Runs on the event loop: waits while the pipe is full."""
        with self._filled:
            if self._dropping:
                return
            self._chunks.append(memoryview(data))
            self._size += len(data)
            if self._wanted and self._size >= self._wanted:
                self._filled.notify()
            full = self._size >= self._capacity
            if full:
                self._writer_waits = True
                self._room.clear()
        if full:
            await self._room.wait()

    def end(self) -> None:
        with self._filled:
            self._ended = True
            self._filled.notify()

    def fail(self, failure: BaseException) -> None:
        with self._filled:
            self._failure = failure
            self._filled.notify()

    def drop(self) -> None:
        """The reader is done: what is left, and what comes, is dropped."""
        with self._filled:
            self._dropping = True
            self._chunks.clear()
            self._size = 0
            self._writer_waits = False
        self._room.set()


class _Body:
    """The request's body through python-multipart's parser, a chunk at a time."""

    def __init__(self, request: Request, limit: int) -> None:
        _, options = parse_options_header(request.headers.get("content-type"))
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadUpload(400, "Missing boundary in multipart.")
        self._chunks = request.stream()
        self._limit = limit
        self._read = 0
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begins,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_ends,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_ends,
                "on_end": self._on_body_ends,
            },
        )
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._part: _Part | None = None
        self.message = bytearray()
        self.message_seen = False
        self.message_done = False
        self.file_seen = False
        self.ended = False
        #: The file's bytes the last chunk held, to be passed on once the parser is done with it.
        self.file_data: list[bytes] = []

    async def feed(self) -> bool:
        """Parse the next chunk; False once the body has ended, well formed and with both
        parts (else BadUpload)."""
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            chunk = b""
        except ClientDisconnect:
            raise BadUpload(400, "the client went away before the body ended") from None
        if not chunk:
            self._check_ended()
            return False
        self._read += len(chunk)
        if self._read > self._limit:
            raise BadUpload(413, f"the body is larger than the limit of {self._limit} bytes")
        try:
            self._parser.write(chunk)
        except FormParserError:
            raise BadUpload(400, "Invalid multipart data.") from None
        return True

    def _check_ended(self) -> None:
        """At the body's end: raises unless it ended well, with both parts."""
        if not self.message_seen:
            raise _field_error("message", "Field required")
        if not self.message_done:
            raise _field_error("message", "the body ends inside the message part")
        if not self.file_seen:
            raise _field_error("file", "Field required")
        if not self.ended:
            raise _field_error("file", "the body ends before its closing boundary")

    def _on_part_begins(self) -> None:
        self._disposition = b""
        self._part = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_ends(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise BadUpload(400, 'The Content-Disposition header field "name" must be provided.')
        is_file = b"filename" in options
        if name == b"message":
            if self.message_seen:
                raise _field_error("message", "sent more than once")
            if is_file:
                raise _field_error("message", "Input should be a valid string, not a file")
            self.message_seen = True
            self._part = "message"
        elif name == b"file":
            if self.file_seen:
                raise _field_error("file", "sent more than once")
            if not is_file:
                raise _field_error("file", "Expected a file (a part with a filename)")
            self.file_seen = True
            self._part = "file"

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            # Most calls pass a whole chunk of the body: kept as it is, not copied.
            self.file_data.append(data if start == 0 and end == len(data) else data[start:end])
        elif self._part == "message":
            if len(self.message) + end - start > MESSAGE_BYTES:
                raise BadUpload(400, f"Part exceeded maximum size of {MESSAGE_BYTES // 1024}KB.")
            self.message += data[start:end]

    def _on_part_ends(self) -> None:
        if self._part == "message":
            self.message_done = True
        self._part = None

    def _on_body_ends(self) -> None:
        self.ended = True

    def take_file_data(self) -> list[bytes]:
        data, self.file_data = self.file_data, []
        return data


class _Streaming:
    """The rest of the body, read by a task while the intake takes the file."""

    def __init__(self, body: _Body, pipe: _Pipe) -> None:
        self._body = body
        self._pipe = pipe
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            for data in self._body.take_file_data():
                await self._pipe.put(data)
            while await self._body.feed():
                for data in self._body.take_file_data():
                    await self._pipe.put(data)
        except BaseException as failure:
            self._pipe.fail(failure)
            raise
        self._pipe.end()

    async def finish(self) -> None:
        """Read what is left of the body, dropping it; raises the body's failure."""
        self._pipe.drop()
        await self._task

    def cancel(self) -> None:
        self._task.cancel()


async def _spooled(body: _Body) -> IO[bytes]:
    """The whole body read, the file part (which came before the message) spooled."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
    try:
        while True:
            data = b"".join(body.take_file_data())
            if data:
                await asyncio.to_thread(spool.write, data)
            if not await body.feed():
                break
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


@asynccontextmanager
async def multipart_upload(request: Request, limit: int) -> AsyncIterator[Upload]:
    """The message and the file of a multipart body of at most `limit` bytes; BadUpload
    when the body cannot be taken. The file streams in while the block runs, if the
    message came first. Once the block is done, the rest of the body is read and dropped
    (the caller hears the answer after its whole request, as before), and a failure of
    the body met meanwhile is raised."""
    body = _Body(request, limit)
    while not body.message_done and not body.file_seen:
        await body.feed()
    if not body.message_done:
        spool = await _spooled(body)
        try:
            yield Upload(bytes(body.message), spool)
        finally:
            spool.close()
        return
    pipe = _Pipe(PIPE_BYTES)
    streaming = _Streaming(body, pipe)
    try:
        yield Upload(bytes(body.message), io.BufferedReader(pipe))
    except BaseException as error:
        if not isinstance(error, Exception):
            streaming.cancel()
        await streaming.finish()
        raise
    await streaming.finish()
