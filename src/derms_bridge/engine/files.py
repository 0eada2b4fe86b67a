"""The file flows' engine (7, 8): intake into segments, workers that send them, one ack.

1. Intake: the CSV is read as it streams in, every row checked, and cut into segments
   of `segments.size` rows, kept (as their rows) with the instance and the job in one
   transaction, committed once the whole file has come. A message whose messageId was
   seen resumes that instance.
2. A worker claims a queued job under a lease and runs CPMCS's health check.
3. Workers (in every hub process) claim segments under a lease, build each one's body
   and send it, `segments.parallelism` at a time; a segment that fails stops the others.
4. Whoever records the last segment makes the acknowledgement due; a worker claims
   it and sends DERMS the one MsgAck of the run, with retries, then the emails.
A process that dies leaves leases that run out, and another worker takes over.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import io
import logging
import os
import re
import socket
import threading
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

import stamina
from pydantic import BaseModel, ValidationError

from derms_bridge.connectors.cpmcs import CpmcsClient
from derms_bridge.connectors.derms import DermsClient
from derms_bridge.connectors.http import HttpConnection
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.notifications import ProcessNotifier
from derms_bridge.engine.polling import PollingLoop
from derms_bridge.engine.runner import activity_of
from derms_bridge.errors import FlowError, TechnicalFault
from derms_bridge.flows.csv_rows import utc_problem
from derms_bridge.flows.ports import AnyJson, CsvRow, FileFlow, segment_json
from derms_bridge.flows.registry import FILE_FLOWS
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.ops import Activity, InstanceFilter
from derms_bridge.settings import Segments
from derms_bridge.store.file_jobs import (
    ClaimedJob,
    ClaimedSegment,
    FileJobStore,
    NewFile,
    NewSegment,
    SegmentResult,
)
from derms_bridge.store.instances import InstanceStore

log = logging.getLogger(__name__)

#: How many bad rows a refused file's FAILURE acknowledgement names.
BAD_ROWS_NAMED = 10


class FileRefused(Exception):
    """The trigger's message or the file's header does not fit: nothing is kept."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


@dataclass(frozen=True)
class Received:
    instance_id: str
    resumed: bool


@dataclass
class _Activities:
    """Calls recorded as activities of a file's instance."""

    entries: list[Activity] = field(default_factory=list)

    def observe(self, call: Activity) -> None:
        self.entries.append(activity_of(call))


@dataclass
class _Scan:
    """What reading the file found besides its segments."""

    rows: int = 0
    bad_rows: list[str] = field(default_factory=list)


#: A segment's rows as CSV lines, the line its first row stood on, and how many.
_Rows = tuple[bytes, int, int]


@dataclass(frozen=True)
class _CutFailed:
    """The cutter's end when reading or cutting the file raised."""

    error: BaseException


#: A batch of segments, their rows being compressed; None: the file's end.
_Cut = Future[list[_Rows]] | _CutFailed | None

#: Segments handed from the intake's thread to the store at a time: a handoff wakes the
#: event loop and a thread, which costs about as much as checking a segment does.
_BATCH_SEGMENTS = 20

#: How much of the upload is read at a time.
_CHUNK_BYTES = 1 << 20

#: How many distinct date-times the plain way learns before it leaves a file to the csv
#: module: each one learned compiles the expression of a block again.
_PLAIN_TIMES = 64


class _Upload:
    """The upload, read a chunk at a time: what has been read and not yet taken is
    `data[pos:]`. The file's last line gets the line feed it may lack."""

    def __init__(self, upload: IO[bytes]) -> None:
        self._upload = upload
        self.data = b""
        self.pos = 0
        self.ended = False
        self._first = True

    def more(self) -> bool:
        """Read another chunk; False at the file's end."""
        if self.ended:
            return False
        chunk = self._upload.read(_CHUNK_BYTES)
        if self._first:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
            self._first = False
        if not chunk:
            self.ended = True
            if self.pos == len(self.data) or self.data.endswith(b"\n"):
                return False
            chunk = b"\n"
        self.data = self.data[self.pos :] + chunk
        self.pos = 0
        return True

    def line(self) -> bytes | None:
        """The next line without its line feed; None at the file's end."""
        while (end := self.data.find(b"\n", self.pos)) < 0:
            if not self.more():
                return None
        line = self.data[self.pos : end]
        self.pos = end + 1
        return line

    def drain(self) -> None:
        """Read to the file's end, dropping what is read."""
        self.data, self.pos = b"", 0
        drain(self._upload)
        self.ended = True

    def rest(self) -> IO[bytes]:
        """The file from `pos` on, for the csv module to read."""
        head = self.data[self.pos :]
        self.data, self.pos = b"", 0
        return io.BufferedReader(_Joined(head, self._upload))


def drain(upload: IO[bytes]) -> None:
    """Read an upload to its end, dropping what is read: its reads raise if it broke off."""
    while upload.read(_CHUNK_BYTES):
        pass


class _Joined(io.RawIOBase):
    """Bytes already read, then the rest of a file."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


#: The bytes of plain rows kept as lines: printable ASCII but the quote and the backslash
#: (the comma among them, as it joins fields), and the line feed.
_PLAIN_LINE_BYTES = bytes(set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}) + b"\n"


#: The bytes of a segment of plain rows: a block the plain way cut keeps the carriage
#: returns of its line ends, and only those.
_PLAIN_SEGMENT_BYTES = _PLAIN_LINE_BYTES + b"\r"


def _header(lines: _Upload) -> list[str] | None:
    """The file's first line as CSV fields; None for an empty file."""
    try:
        first = lines.line()
        return None if first is None else next(csv.reader([first.decode()]), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FileRefused([{"field": "file", "message": f"not a CSV file: {exc}"}]) from None


def _check_header(flow: FileFlow[Any], header: list[str] | None) -> None:
    if header is None or tuple(h.strip() for h in header) != flow.header:
        raise FileRefused(
            [
                {
                    "field": "file",
                    "message": f"the header must be {','.join(flow.header)}"
                    + (f", not {','.join(header)}" if header else "; the file is empty"),
                }
            ]
        )


def _compressed(batch: list[_Rows]) -> list[_Rows]:
    # Level 1: a reservation segment's rows shrink about 14 times, at a fraction of the
    # cost of writing them uncompressed.
    return [
        (zlib.compress(rows_csv, 1), first_line, count) for rows_csv, first_line, count in batch
    ]


def _cut(
    upload: _Upload,
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: _Scan,
    emit: Callable[[bytes, int, int], None],
) -> None:
    """Runs in a thread: check every row, and emit segments of `size` rows, as CSV lines.
    Blocks of plain rows are checked by the flow's expression, and kept as they came; from
    the first block that is not, the csv module reads the rest of the file and each row is
    checked on its own."""
    row_pattern = flow.plain_row_pattern
    if row_pattern is None or not _cut_plain(upload, row_pattern, flow, lookups, size, scan, emit):
        _cut_rows(upload.rest(), 1 + scan.rows, flow, lookups, size, scan, emit)


def _cut_plain(
    upload: _Upload,
    row_pattern: Callable[[bytes, Lookups], bytes],
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: _Scan,
    emit: Callable[[bytes, int, int], None],
) -> bool:
    """The plain way, a block of `size` rows matched at a time; False at the first block it
    cannot take whole, which the csv module then reads from its first line."""
    times: list[bytes] = []

    def blocks() -> re.Pattern[bytes]:
        known = b"|".join(map(re.escape, times)) if times else b"(?!)"
        row = rb"%s\r?\n" % row_pattern(b"(?:" + known + b")", lookups)
        # A full block's last row is a group of its own: that it took part tells that the
        # block has `size` rows, where counting its lines would cost a third as much as
        # the match.
        return re.compile(rb"(?:%s){0,%d}(%s)?" % (row, size - 1, row))

    pattern = blocks()
    while True:
        data, pos = upload.data, upload.pos
        match = pattern.match(data, pos)
        end = pos if match is None else match.end()
        full = match is not None and match.start(1) >= 0
        rows = size if full else data.count(b"\n", pos, end)
        if rows < size:
            if end == len(data):
                # The block runs to the end of what has been read: read on, if there is more.
                if upload.more():
                    continue
                if not rows:
                    return True
            elif data.find(b"\n", end) < 0:
                upload.more()
                continue
            elif len(times) < _PLAIN_TIMES and _learned(
                data[end : data.find(b"\n", end)], flow, times
            ):
                pattern = blocks()
                continue
            else:
                return False
        # Kept with the carriage returns of their line ends, if any (the expression's fields
        # take none): segment_body takes them out in the pass it makes anyway, where
        # taking them out here would copy the block again.
        emit(data[pos : end - 1], 2 + scan.rows, rows)
        scan.rows += rows
        upload.pos = end


def _learned(line: bytes, flow: FileFlow[Any], times: list[bytes]) -> bool:
    """Whether the row holds UTC date-times of plain text not seen yet: added to `times`."""
    fields = line.removesuffix(b"\r").split(b",")
    if len(fields) != len(flow.header):
        return False
    found = False
    for column in flow.plain_time_columns:
        value = fields[column]
        if value in times or value.translate(None, _PLAIN_LINE_BYTES):
            continue
        if utc_problem(flow.header[column], value.decode("ascii")) is None:
            times.append(value)
            found = True
    return found


def _cut_rows(
    rest: IO[bytes],
    lines_before: int,
    flow: FileFlow[Any],
    lookups: Lookups,
    size: int,
    scan: _Scan,
    emit: Callable[[bytes, int, int], None],
) -> None:
    """The rest of the file read by the csv module, and checked a row at a time."""
    reader = csv.reader(io.TextIOWrapper(rest, encoding="utf-8", newline=""))
    try:
        rows: list[CsvRow] = []
        first_line = 0
        width = len(flow.header)

        def cut() -> None:
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            emit(text.getvalue().removesuffix("\n").encode(), first_line, len(rows))

        for row in reader:
            line = lines_before + reader.line_num
            if not row:
                continue
            problem = (
                f"has {len(row)} fields, the header has {width}"
                if len(row) != width
                else flow.row_problem(row, lookups)
            )
            if problem is not None:
                scan.bad_rows.append(f"line {line}: {problem}")
                if len(scan.bad_rows) >= BAD_ROWS_NAMED:
                    break
                continue
            scan.rows += 1
            if scan.bad_rows:
                continue
            if not rows:
                first_line = line
            rows.append(row)
            if len(rows) == size:
                cut()
                rows = []
        if rows and not scan.bad_rows:
            cut()
    except (csv.Error, UnicodeDecodeError) as exc:
        scan.bad_rows.append(
            f"line {lines_before + reader.line_num}: the file cannot be read as CSV: {exc}"
        )


def segment_body(
    flow: FileFlow[Any], message: BaseModel, rows_csv: bytes, lookups: Lookups
) -> bytes:
    """A segment's body, from its rows as the intake kept them (checked already). Rows of
    plain text are their fields as they stand, whichever way the intake read them: the csv
    module writes a field as it came unless it needs quotes."""
    if flow.plain_segment_request is not None and not rows_csv.translate(
        None, _PLAIN_SEGMENT_BYTES
    ):
        fields = rows_csv.translate(None, b"\r").replace(b"\n", b",").split(b",")
        return flow.plain_segment_request(message, fields, lookups)
    rows = list(csv.reader(io.StringIO(rows_csv.decode(), newline="")))
    return segment_json(flow.segment_request(message, rows, lookups)).encode()


class FileIntake:
    def __init__(
        self,
        instances: InstanceStore,
        files: FileJobStore,
        lookups: Callable[[], Lookups],
        settings: Segments,
        wake: Callable[[], None],
    ) -> None:
        self._instances = instances
        self._files = files
        self._lookups = lookups
        self._size = settings.size
        self._wake = wake

    async def receive(
        self,
        flow: FileFlow[Any],
        message_text: str | bytes,
        upload: IO[bytes],
        *,
        caller: str | None,
    ) -> Received:
        """The trigger's message and its file. `upload` is read by threads, and its reads
        may wait for the bytes to arrive; what it holds is acted on only once it has been
        read to its end, so that a read that raises (the upload broke off) leaves nothing
        written, and goes to the caller."""
        # Step 1: the message and the file's header, before anything is kept.
        try:
            message = flow.message_model.model_validate_json(message_text)
        except ValidationError as exc:
            raise FileRefused(
                [
                    {
                        "field": ".".join(["message", *(str(p) for p in error["loc"])]),
                        "message": error["msg"],
                    }
                    for error in exc.errors()
                ]
            ) from None
        lines = _Upload(upload)
        _check_header(flow, await asyncio.to_thread(_header, lines))
        keys = flow.business_keys(message)
        message_json = message.model_dump(mode="json", exclude_none=True)
        message_id = dict(keys)["messageId"]
        earlier = await self._instances.search(
            InstanceFilter(flows=(flow.info.key,), business_key=message_id, limit=1)
        )
        resubmit_of = None
        if earlier.items:
            previous = earlier.items[0].id
            if await self._files.has_segments(previous):
                # DERMS's resend after a FAILURE: the segments already kept go again,
                # only those CPMCS has not taken.
                await asyncio.to_thread(lines.drain)
                resumed = await self._files.resume(previous)
                self._wake()
                return Received(previous, resumed=resumed)
            resubmit_of = previous
        new_file = NewFile(
            instance_id=str(uuid.uuid4()),
            flow=flow.info.key,
            caller=caller,
            message=message_json,
            keys=keys,
            resubmit_of=resubmit_of,
        )
        # Steps 2 and 3: every row checked, the segments kept with the instance in one
        # transaction.
        scan = _Scan()
        try:
            async with self._cutting(lines, flow, scan) as segments:
                await self._files.receive(new_file, segments)
        except _NothingToSend:
            count = (
                f"{BAD_ROWS_NAMED} bad rows or more"
                if len(scan.bad_rows) >= BAD_ROWS_NAMED
                else f"{len(scan.bad_rows)} bad row" + ("s" if len(scan.bad_rows) > 1 else "")
            )
            failure = (
                f"{count}, nothing sent: " + "; ".join(scan.bad_rows)
                if scan.bad_rows
                else "the file has no rows"
            )
            await self._files.refuse(new_file, failure, scan.bad_rows)
        self._wake()
        return Received(new_file.instance_id, resumed=False)

    @asynccontextmanager
    async def _cutting(
        self, lines: _Upload, flow: FileFlow[Any], scan: _Scan
    ) -> AsyncIterator[AsyncIterator[NewSegment]]:
        """The file's segments, as a thread cuts them and another compresses them. They end
        once the upload has been read to its end: with _NothingToSend when it had bad rows
        or none, or with the error that reading or cutting it raised. At most a few batches
        wait between the threads and the store: constant memory."""
        loop = asyncio.get_running_loop()
        handoff: asyncio.Queue[_Cut] = asyncio.Queue()
        room = threading.BoundedSemaphore(3)
        # Compressing in a thread of its own overlaps it with checking the next batch.
        compressing = ThreadPoolExecutor(1, thread_name_prefix="segment-zlib")
        abandoned = threading.Event()
        batch: list[_Rows] = []

        def put(item: _Cut) -> None:
            room.acquire()
            loop.call_soon_threadsafe(handoff.put_nowait, item)

        def emit(rows_csv: bytes, first_line: int, row_count: int) -> None:
            if abandoned.is_set():
                raise _Abandoned
            batch.append((rows_csv, first_line, row_count))
            if len(batch) == _BATCH_SEGMENTS:
                put(compressing.submit(_compressed, batch.copy()))
                batch.clear()

        def cut() -> None:
            try:
                _cut(lines, flow, self._lookups(), self._size, scan, emit)
                if scan.bad_rows:
                    # Refused, but only once the whole file has come.
                    lines.drain()
                elif batch:
                    put(compressing.submit(_compressed, batch))
            except BaseException as error:
                put(_CutFailed(error))
                return
            put(None)

        ended = False

        async def segments() -> AsyncIterator[NewSegment]:
            nonlocal ended
            seq = 0
            while True:
                item = await handoff.get()
                room.release()
                if item is None:
                    ended = True
                    break
                if isinstance(item, _CutFailed):
                    ended = True
                    raise item.error
                if scan.bad_rows:
                    continue
                for rows_zlib, first_line, row_count in await asyncio.wrap_future(item):
                    seq += 1
                    yield NewSegment(
                        seq=seq, first_line=first_line, row_count=row_count, rows_zlib=rows_zlib
                    )
            if scan.bad_rows or not scan.rows:
                raise _NothingToSend

        cutter = asyncio.create_task(asyncio.to_thread(cut))
        try:
            yield segments()
        finally:
            if not ended:
                # The store stopped taking segments: the cutter stops at its next one, and
                # what it handed over is taken so that it never waits for room.
                abandoned.set()
                while not isinstance(await handoff.get(), _CutFailed | None):
                    room.release()
            await cutter
            compressing.shutdown(cancel_futures=True)


class _NothingToSend(Exception):
    """The file had bad rows or none: its segments are not kept."""


class _Abandoned(Exception):
    """The store stopped taking the segments: the cutter stops."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class FileWorker:
    def __init__(
        self,
        *,
        files: FileJobStore,
        cpmcs: HttpConnection,
        derms: Mapping[str, HttpConnection],
        lookups: Callable[[], Lookups],
        error_handler: CommonErrorHandler,
        notifier: ProcessNotifier,
        settings: Segments,
    ) -> None:
        self.name = worker_name()
        self._files = files
        self._cpmcs = cpmcs
        self._derms = derms
        self._lookups = lookups
        self._errors = error_handler
        self._notifier = notifier
        self._settings = settings
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._polling = PollingLoop("file worker", settings.poll_seconds, self.step)
        self._messages: dict[str, BaseModel] = {}

    def wake(self) -> None:
        """More work may be waiting."""
        self._polling.wake()

    async def run(self, stop: asyncio.Event) -> None:
        await self._polling.run(stop)

    async def step(self) -> bool:
        """One round of whatever work is due; True when there was some."""
        coordinated = await self._coordinate()
        sent = await self._send_segments()
        return coordinated or sent

    @asynccontextmanager
    async def _held(self, job: str) -> AsyncIterator[None]:
        """Renew a job's claim while its work runs: an acknowledgement retried against a
        slow DERMS can outlast a lease, and a lapsed claim would be sent again by another
        worker."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._lease.total_seconds() / 3)
                await self._files.renew_job(self.name, self._lease, job)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    def _message(self, flow: FileFlow[Any], instance_id: str, payload: Any) -> BaseModel:
        message = self._messages.get(instance_id)
        if message is None:
            message = flow.message_model.model_validate(payload)
            self._messages[instance_id] = message
        return message

    async def _coordinate(self) -> bool:
        did = bool(await self._files.finish_stalled())
        while (job := await self._files.claim_job(self.name, self._lease)) is not None:
            did = True
            async with self._held(job.instance_id):
                if job.state == "queued":
                    await self._check_health(job)
                else:
                    await self._acknowledge(job)
        return did

    async def _check_health(self, job: ClaimedJob) -> None:
        """Step 2: CPMCS must answer its health check before any segment goes."""
        calls = _Activities()
        try:
            await CpmcsClient(self._cpmcs, calls.observe).send("healthCheck", None, AnyJson)
        except FlowError as error:
            await self._files.add_activities(job.instance_id, calls.entries)
            failure = f"CPMCS health check failed: {error}"
            await self._files.fail_before_sending(job.instance_id, self.name, failure)
            await self._acknowledge(
                ClaimedJob(
                    **{**vars(job), "state": "acking", "outcome": "FAILURE", "failure": failure}
                )
            )
            return
        await self._files.add_activities(job.instance_id, calls.entries)
        await self._files.start_sending(job.instance_id, self.name)

    async def _send_segments(self) -> bool:
        """Step 3: send segments, `segments.parallelism` at a time, while any are left."""
        return await _Sending(
            files=self._files,
            owner=self.name,
            lease=self._lease,
            parallelism=self._settings.parallelism,
            body=self._body,
            send=self._send,
            wake=self.wake,
        ).run()

    def _body(self, segment: ClaimedSegment) -> bytes:
        flow = FILE_FLOWS[segment.flow]
        return segment_body(
            flow,
            self._message(flow, segment.instance_id, segment.message),
            zlib.decompress(segment.rows_zlib),
            self._lookups(),
        )

    async def _send(self, segment: ClaimedSegment, body: bytes) -> SegmentResult:
        flow = FILE_FLOWS[segment.flow]
        calls = _Activities()
        error: str | None = None
        try:
            await CpmcsClient(self._cpmcs, calls.observe).send_json(flow.segment_operation, body)
        except FlowError as refused:
            error = str(refused)
        # The reference's step 3: an HTTP error on any segment is the file's FAILURE; the
        # acknowledgement's error email says so, once.
        failure: str | None = None
        if error is not None:
            last_line = segment.first_line + segment.row_count - 1
            failure = f"segment {segment.seq} (lines {segment.first_line}-{last_line}): {error}"
        return SegmentResult(segment, error, failure, calls.entries)

    async def _acknowledge(self, job: ClaimedJob) -> None:
        """Step 4 or 5: DERMS gets the run's one MsgAck, then the emails go."""
        flow = FILE_FLOWS[job.flow]
        message = self._message(flow, job.instance_id, job.message)
        keys = flow.business_keys(message)
        succeeded = job.outcome == "SUCCESS"
        summary = (
            f"{job.total_rows} rows in {job.total_segments} segments taken by CPMCS "
            f"{flow.segment_operation} (run {job.run})"
            if succeeded
            else job.failure or "the file was not sent"
        )
        ack = flow.acknowledgement(message, "SUCCESS" if succeeded else "FAILURE", summary)
        calls = _Activities()
        derms = DermsClient(self._derms, self._lookups(), calls.observe)
        ack_error: str | None = None
        try:
            async for attempt in stamina.retry_context(
                on=FlowError,
                attempts=self._settings.ack_attempts,
                wait_initial=0.2,
                wait_max=5.0,
                timeout=None,
            ):
                with attempt:
                    answer = await derms.send(flow.ack_operation, ack, AnyJson, division=None)
                    _accepted(answer.root, flow.ack_operation)
        except FlowError as error:
            ack_error = (
                f"DERMS did not accept the acknowledgement after "
                f"{self._settings.ack_attempts} tries: {error}"
            )
        if not succeeded:
            await self._errors.handle(flow.info, job.instance_id, keys, summary)
        if ack_error is not None:
            await self._errors.handle(flow.info, job.instance_id, keys, ack_error)
        outcome = "SUCCESS" if succeeded and ack_error is None else "FAILURE"
        await self._notifier.process_complete(
            flow.info,
            job.instance_id,
            keys,
            outcome,
            summary + (f"\n{ack_error}" if ack_error else ""),
        )
        await self._files.acknowledged(
            job, self.name, ack_error=ack_error, activities=calls.entries
        )
        self._messages.pop(job.instance_id, None)


def _accepted(answer: Any, operation: str) -> None:
    """A MsgAck whose ackType is not SUCCESS is DERMS not taking the acknowledgement."""
    ack_type = answer.get("MsgAck", {}).get("ackType") if isinstance(answer, dict) else None
    if ack_type not in (None, "SUCCESS"):
        raise TechnicalFault(f"DERMS answered {operation} with ackType {ack_type}")


class _Sending:
    """A worker's sending while segments are left: `parallelism` senders, each of which
    takes the next claimed segment, its body built ahead, the moment its answer comes, as a
    plain client's senders do. Beside them, store rounds record the results, give back
    what will not be sent, and claim ahead up to three times the parallelism, so that a
    sender does not wait on the store; one task renews the leases of all the segments held.
    A failed segment stops its file: what is claimed of it and not sent goes back."""

    def __init__(
        self,
        *,
        files: FileJobStore,
        owner: str,
        lease: timedelta,
        parallelism: int,
        body: Callable[[ClaimedSegment], bytes],
        send: Callable[[ClaimedSegment, bytes], Awaitable[SegmentResult]],
        wake: Callable[[], None],
    ) -> None:
        self._files = files
        self._owner = owner
        self._lease = lease
        self._parallelism = parallelism
        self._body = body
        self._send = send
        self._wake = wake
        self._ready: deque[tuple[ClaimedSegment, bytes]] = deque()
        self._in_flight: set[int] = set()
        self._results: list[SegmentResult] = []
        self._released: list[int] = []
        self._failed: set[str] = set()
        self._round: asyncio.Task[None] | None = None
        self._store_failed = False
        # False once a claim found fewer segments than it asked for, or sending stopped.
        self._more = True
        self._refilled = asyncio.Event()
        self._broken: BaseException | None = None

    async def run(self) -> bool:
        """True when there were segments to send."""
        self._top_up()
        assert self._round is not None
        await self._round
        if not self._ready:
            while self._round is not None:
                await self._round
            if self._broken is not None:
                raise self._broken
            return False
        senders = [asyncio.create_task(self._sender()) for _ in range(self._parallelism)]
        renewing = asyncio.create_task(self._renew())
        try:
            await asyncio.gather(*senders)
            while self._round is not None:
                await self._round
        finally:
            for task in (*senders, renewing):
                task.cancel()
            await asyncio.gather(*senders, renewing, return_exceptions=True)
        if self._broken is not None:
            raise self._broken
        return True

    async def _sender(self) -> None:
        while True:
            while not self._ready:
                if not self._more:
                    return
                self._refilled.clear()
                await self._refilled.wait()
            segment, body = self._ready.popleft()
            self._in_flight.add(segment.id)
            try:
                result = await self._send(segment, body)
            except Exception as error:
                self._stop(error)
                continue
            finally:
                self._in_flight.discard(segment.id)
            self._results.append(result)
            if result.error is not None:
                self._failed.add(segment.instance_id)
                self._release(lambda held: held.instance_id in self._failed)
            self._top_up()

    def _top_up(self) -> None:
        """Start a store round if one is due and none is running. Rounds carry several
        results and claims, not one a segment: a round's statements cost the hub more than
        sending a segment does."""
        if self._round is not None or self._store_failed:
            return
        low = self._more and len(self._ready) <= self._parallelism
        asked = 3 * self._parallelism - len(self._ready) - len(self._in_flight) if low else 0
        if (
            asked > 0
            or self._released
            or len(self._results) >= self._parallelism
            or (self._results and (not self._in_flight or self._failed))
        ):
            self._round = asyncio.create_task(
                self._store_round(self._results, asked, self._released)
            )
            self._results, self._released = [], []

    async def _store_round(
        self, results: list[SegmentResult], asked: int, released: list[int]
    ) -> None:
        try:
            due, claimed = await self._files.record_and_claim(
                self._owner, self._lease, results, asked, released
            )
        except Exception as error:
            self._store_failed = True
            self._round = None
            self._stop(error)
            return
        self._round = None
        if due:
            self._wake()
        if len(claimed) < asked:
            self._more = False
        for segment in claimed:
            if self._broken is not None or segment.instance_id in self._failed:
                self._released.append(segment.id)
                continue
            try:
                self._ready.append((segment, self._body(segment)))
            except Exception as error:
                self._released.append(segment.id)
                self._stop(error)
        self._refilled.set()
        self._top_up()

    def _release(self, which: Callable[[ClaimedSegment], bool]) -> None:
        """Give back claimed segments that will not be sent."""
        self._released += [segment.id for segment, _ in self._ready if which(segment)]
        self._ready = deque(held for held in self._ready if not which(held[0]))

    def _stop(self, error: BaseException) -> None:
        """An error no segment's result explains: nothing more is sent, what is in flight
        ends, what is claimed goes back, and the error is raised at the end."""
        self._broken = self._broken or error
        self._more = False
        self._release(lambda _: True)
        self._refilled.set()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            held = [
                *(segment.id for segment, _ in self._ready),
                *self._in_flight,
                *(result.segment.id for result in self._results),
            ]
            try:
                await self._files.renew_segments(self._owner, self._lease, held)
            except Exception:
                # The next renewal may get through before the leases end.
                log.exception("renewing the leases of %d segments failed", len(held))


class WorkerPool:
    """The file worker of one hub process, run beside the API or on its own."""

    def __init__(self, worker: FileWorker) -> None:
        self.worker = worker
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.worker.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
