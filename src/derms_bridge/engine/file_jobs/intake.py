"""Step 1 of the file flows (7, 8): the trigger's message and its CSV taken in.

The CSV is read as it streams in, every row checked, and cut into segments of
`segments.size` rows (csv_cutter.py), kept (as their rows, compressed) with the
instance and the job, and the rows set aside, in one transaction, committed once the
whole file has come, with the DERMS connection its acknowledgements go back to. A message
whose messageId was seen resumes that instance after a FAILURE, or has its finished run's
acknowledgement sent again.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

from pydantic import ValidationError

from derms_bridge import tracing
from derms_bridge.engine.file_jobs.csv_cutter import (
    RowScan,
    UploadReader,
    check_header,
    cut_segments,
    read_header,
)
from derms_bridge.engine.run_context import instance_span
from derms_bridge.engine.uploads import Received, message_refused
from derms_bridge.flows.ports import FileFlow
from derms_bridge.ids import new_instance_id
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.ops import InstanceFilter
from derms_bridge.settings import Segments
from derms_bridge.store.file_job_records import NewFile, NewSegment
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.instances import InstanceStore

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


def _compressed(batch: list[_Rows]) -> list[_Rows]:
    # Level 1: a reservation segment's rows shrink about 14 times, at a fraction of the
    # cost of writing them uncompressed.
    return [
        (zlib.compress(rows_csv, 1), first_line, count) for rows_csv, first_line, count in batch
    ]


class FileIntake:
    def __init__(
        self,
        instances: InstanceStore,
        files: FileJobStore,
        lookups: Callable[[], Lookups],
        settings: Segments,
        wake: Callable[[], None],
        *,
        derms_connections: Mapping[str, str],
    ) -> None:
        """`derms_connections`: the DERMS connection each caller's files are acknowledged
        to, by caller name, where the settings name one."""
        self._instances = instances
        self._files = files
        self._lookups = lookups
        self._size = settings.size
        self._wake = wake
        self._derms_connections = derms_connections

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
            raise message_refused(exc) from None
        lines = UploadReader(upload)
        check_header(flow, await asyncio.to_thread(read_header, lines))
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
                # only those CPMCS has not taken. After a run that finished otherwise,
                # DERMS lost its acknowledgement: that goes again, and no row.
                await asyncio.to_thread(lines.drain)
                resumed = await self._files.resume(previous)
                again = not resumed and await self._files.acknowledge_again(previous)
                self._wake()
                return Received(previous, resumed=resumed, acknowledged_again=again)
            resubmit_of = previous
        instance_id = new_instance_id()
        with instance_span(
            flow.info.key, instance_id, caller=caller, resubmit_of=resubmit_of
        ) as span:
            new_file = NewFile(
                instance_id=instance_id,
                flow=flow.info.key,
                caller=caller,
                message=message_json,
                keys=keys,
                resubmit_of=resubmit_of,
                derms_connection=self._derms_connection(caller),
                trace=tracing.ref_of(span),
            )
            # Steps 2 and 3: every row checked, the segments kept with the instance and the
            # rows set aside in one transaction.
            scan = RowScan()
            try:
                async with self._cutting(lines, flow, scan) as segments:
                    await self._files.receive(new_file, segments, scan.set_aside.kept)
            except _NothingToSend:
                await self._files.nothing_to_send(new_file, scan.set_aside.kept())
            self._wake()
        return Received(new_file.instance_id, resumed=False)

    def _derms_connection(self, caller: str | None) -> str:
        """Where the file's acknowledgements go back to: the DERMS connection the settings
        name for the caller that sent it, else the Routing lookup's `*` row. The trigger's
        message names no division, and its drmsInstanceId is the sender's word, not its
        credential."""
        named = self._derms_connections.get(caller) if caller is not None else None
        return named or self._lookups().derms_connection_for(None)

    @asynccontextmanager
    async def _cutting(
        self, lines: UploadReader, flow: FileFlow[Any], scan: RowScan
    ) -> AsyncIterator[AsyncIterator[NewSegment]]:
        """The file's segments, as a thread cuts them and another compresses them. They end
        once the upload has been read to its end: with _NothingToSend when it had no row to
        send, or with the error that reading or cutting it raised. At most a few batches
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
                cut_segments(lines, flow, self._lookups(), self._size, scan, emit)
                if batch:
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
                for rows_zlib, first_line, row_count in await asyncio.wrap_future(item):
                    seq += 1
                    yield NewSegment(
                        seq=seq, first_line=first_line, row_count=row_count, rows_zlib=rows_zlib
                    )
            if not scan.rows:
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
    """The file had no row to send: none, or every one set aside."""


class _Abandoned(Exception):
    """The store stopped taking the segments: the cutter stops."""
