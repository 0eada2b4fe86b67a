"""The file worker of a hub process: it runs the file flows' steps 2 to 5 (7, 8) as each
comes due, under leases.

1. It claims a queued job under a lease and runs its flow's health check (step 2).
2. It claims segments under a lease, builds each one's body and has its flow send it,
   `segments.parallelism` at a time (step 3, sending.py); a segment whose call fails for a
   passing reason is tried again (`segments.retry`); a segment that fails for good stops
   the others.
3. Whoever records the last segment makes the acknowledgement due; a worker claims it and
   runs its flow's acknowledgement and emails (steps 4 and 5), to the DERMS connection
   that sent the file, and keeps the MsgAck as it went.
4. A finished run's acknowledgement made due again (DERMS resent the file, or an operator
   asked) goes again as it was kept.
What each step does and sends is the flow's (flows/event_device_reservation.py,
flows/event_device_outcome.py); a step's calls are recorded as its instance's
activities. A process that dies leaves leases that run out, and another worker takes over;
one that stops (its Shutdown) claims nothing more, lets its calls in flight end within the
grace, and gives back every claim it still holds, for another worker to take at once.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import stamina
from pydantic import BaseModel

from derms_bridge import tracing
from derms_bridge.catalog import FlowInfo
from derms_bridge.connectors.cpmcs import CpmcsClient
from derms_bridge.connectors.derms import DermsClient
from derms_bridge.connectors.http import HttpConnection
from derms_bridge.engine.background import BackgroundTask, CutShort, Shutdown, renewing
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.file_jobs.csv_cutter import segment_body
from derms_bridge.engine.file_jobs.sending import SegmentSending
from derms_bridge.engine.notifications import ProcessNotifier
from derms_bridge.engine.polling import PollingLoop, worker_name
from derms_bridge.engine.run_context import activity_of, step_span
from derms_bridge.errors import TechnicalFault
from derms_bridge.flows.ports import FileFlow, FileJobContext, FileOutcome
from derms_bridge.flows.registry import FILE_FLOWS
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.ops import Activity
from derms_bridge.settings import Segments
from derms_bridge.store.file_job_records import ClaimedJob, ClaimedSegment, SegmentResult
from derms_bridge.store.file_jobs import FileJobStore


@dataclass
class _Activities:
    """Calls recorded as activities of a file's instance."""

    entries: list[Activity] = field(default_factory=list)

    def observe(self, call: Activity) -> None:
        self.entries.append(activity_of(call))


@dataclass(frozen=True)
class _JobEmails:
    """The common error handler and the process emails, for a file job's instance."""

    errors: CommonErrorHandler
    notifier: ProcessNotifier
    flow: FlowInfo
    instance_id: str
    keys: list[tuple[str, str]]

    async def report(self, error: str) -> None:
        with step_span("error handler", self.instance_id):
            await self.errors.handle(self.flow, self.instance_id, self.keys, error)

    async def no_file(self, summary: str) -> None:
        with step_span("noFile email", self.instance_id):
            await self.notifier.no_file(self.flow, self.instance_id, summary)

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        with step_span("processComplete email", self.instance_id):
            await self.notifier.process_complete(
                self.flow, self.instance_id, self.keys, outcome, summary, whatever_the_flag=failed
            )


async def _in_trace(job: ClaimedJob, step: str, work: Awaitable[None]) -> None:
    """A job's step, in its instance's trace."""
    with tracing.span(
        step,
        parent=tracing.under(job.trace),
        attributes={"derms_bridge.instance_id": job.instance_id, "derms_bridge.run": job.run},
    ):
        await work


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
        shutdown: Shutdown,
    ) -> None:
        self.name = worker_name()
        self.shutdown = shutdown
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

    def _message(self, flow: FileFlow[Any], instance_id: str, payload: Any) -> BaseModel:
        message = self._messages.get(instance_id)
        if message is None:
            message = flow.message_model.model_validate(payload)
            self._messages[instance_id] = message
        return message

    def _context(
        self, flow: FileFlow[Any], job: ClaimedJob, message: BaseModel, calls: _Activities
    ) -> FileJobContext:
        """What the job's flow runs a step against; the step's calls go to `calls`."""
        emails = _JobEmails(
            self._errors, self._notifier, flow.info, job.instance_id, flow.business_keys(message)
        )
        return FileJobContext(
            cpmcs=CpmcsClient(self._cpmcs, calls.observe),
            derms=DermsClient(
                self._derms, self._lookups(), calls.observe, connection=job.derms_connection
            ),
            errors=emails,
            notices=emails,
            ack_attempts=self._settings.ack_attempts,
        )

    async def _coordinate(self) -> bool:
        did = bool(await self._files.finish_stalled())
        while (
            not self.shutdown.begun.is_set()
            and (job := await self._files.claim_job(self.name, self._lease)) is not None
        ):
            did = True
            # An acknowledgement retried against a slow DERMS can outlast a lease, and a
            # lapsed claim would be sent again by another worker.
            async with renewing(
                lambda: self._files.renew_job(self.name, self._lease, job.instance_id),
                self._lease.total_seconds() / 3,
            ):
                if job.state == "queued":
                    step = _in_trace(job, "health check", self._check_health(job))
                elif job.state == "acking_again":
                    step = _in_trace(job, "acknowledgement again", self._acknowledge_again(job))
                else:
                    step = _in_trace(job, "acknowledgement", self._acknowledge(job))
                try:
                    await self.shutdown.within_grace(step)
                except CutShort:
                    await self._files.give_back_job(job.instance_id, self.name)
        return did

    async def _check_health(self, job: ClaimedJob) -> None:
        """Step 2, the flow's: CPMCS must be up before any segment goes."""
        flow = FILE_FLOWS[job.flow]
        message = self._message(flow, job.instance_id, job.message)
        calls = _Activities()
        failure = await flow.check_health(self._context(flow, job, message, calls))
        await self._files.add_activities(job.instance_id, calls.entries)
        if failure is not None:
            await self._files.fail_before_sending(job.instance_id, self.name, failure)
            failing = ClaimedJob(
                **{**vars(job), "state": "acking", "outcome": "FAILURE", "failure": failure}
            )
            await _in_trace(failing, "acknowledgement", self._acknowledge(failing))
            return
        await self._files.start_sending(job.instance_id, self.name)

    async def _send_segments(self) -> bool:
        """Step 3: send segments, `segments.parallelism` at a time, while any are left."""
        return await SegmentSending(
            files=self._files,
            owner=self.name,
            lease=self._lease,
            parallelism=self._settings.parallelism,
            body=self._body,
            send=self._send,
            wake=self.wake,
            shutdown=self.shutdown,
        ).run()

    def _body(self, segment: ClaimedSegment) -> bytes:
        flow = FILE_FLOWS[segment.flow]
        return segment_body(
            flow,
            self._message(flow, segment.instance_id, segment.message),
            zlib.decompress(segment.rows_zlib),
            self._lookups(),
        )

    async def _send(
        self, segment: ClaimedSegment, body: bytes, still_sent: Callable[[str], bool]
    ) -> SegmentResult:
        calls = _Activities()
        send_segment = FILE_FLOWS[segment.flow].send_segment
        cpmcs = CpmcsClient(self._cpmcs, calls.observe)
        sent_again = False
        with tracing.span(
            f"segment {segment.seq}",
            parent=tracing.under(segment.trace),
            attributes={
                "derms_bridge.instance_id": segment.instance_id,
                "derms_bridge.segment": segment.seq,
                "derms_bridge.rows": segment.row_count,
                "derms_bridge.first_line": segment.first_line,
            },
        ) as span:
            try:
                error = await send_segment(cpmcs, body)
            except TechnicalFault as fault:
                error, sent_again = await self._send_again(
                    segment, body, send_segment, cpmcs, fault, still_sent
                )
            if error is not None:
                tracing.failed(span, "segment refused")
        # The file's failure names where in the file it stopped (a segment's rows run on
        # past the rows set aside among them).
        failure: str | None = None
        if error is not None:
            failure = (
                f"segment {segment.seq} ({segment.row_count} rows from line "
                f"{segment.first_line}): {error}"
            )
        return SegmentResult(segment, error, failure, calls.entries, sent_again)

    async def _send_again(
        self,
        segment: ClaimedSegment,
        body: bytes,
        send_segment: Callable[[CpmcsClient, bytes], Awaitable[str | None]],
        cpmcs: CpmcsClient,
        fault: TechnicalFault,
        still_sent: Callable[[str], bool],
    ) -> tuple[str | None, bool]:
        """A segment whose call failed for a passing reason, tried again with backoff and
        jitter (`segments.retry`) while its file is still being sent: why it failed for
        good, or None; and whether it went again after a try whose answer was lost, so that
        CPMCS may have had it already. Its lease is renewed meanwhile, as it is in flight."""
        retry = self._settings.retry
        last, tries, sent_again = fault, 1, False
        if retry.attempts > 1:
            try:
                async for attempt in stamina.retry_context(
                    on=TechnicalFault,
                    attempts=retry.attempts - 1,
                    timeout=retry.seconds,
                    wait_initial=0.2,
                    wait_max=10.0,
                ):
                    with attempt:
                        if not still_sent(segment.instance_id):
                            break
                        tries += 1
                        sent_again = sent_again or last.answer_lost
                        try:
                            return await send_segment(cpmcs, body), sent_again
                        except TechnicalFault as again:
                            last = again
                            raise
            except TechnicalFault:
                pass
        return (f"{last} ({tries} tries)" if tries > 1 else str(last)), sent_again

    async def _acknowledge(self, job: ClaimedJob) -> None:
        """Steps 4 and 5, the flow's: DERMS gets the run's one acknowledgement, then the
        emails go."""
        flow = FILE_FLOWS[job.flow]
        message = self._message(flow, job.instance_id, job.message)
        outcome = FileOutcome(
            code=(
                "SUCCESS"
                if job.outcome == "SUCCESS"
                else "ERROR"
                if job.outcome == "ERROR"
                else "FAILURE"
            ),
            failure=job.failure,
            rows=job.total_rows,
            segments=job.total_segments,
            run=job.run,
            segments_sent_again=job.segments_sent_again,
            rows_set_aside=job.rows_set_aside,
            set_aside=(
                await self._files.set_aside_named(job.instance_id) if job.rows_set_aside else ()
            ),
        )
        calls = _Activities()
        context = self._context(flow, job, message, calls)
        acknowledgement = await flow.acknowledge(context, message, outcome)
        await self._files.acknowledged(
            job,
            self.name,
            ack=acknowledgement.msg_ack,
            ack_error=acknowledgement.error,
            activities=calls.entries,
        )
        self._messages.pop(job.instance_id, None)

    async def _acknowledge_again(self, job: ClaimedJob) -> None:
        """A finished run's MsgAck, as it went, to DERMS again; nothing else is sent."""
        flow = FILE_FLOWS[job.flow]
        message = self._message(flow, job.instance_id, job.message)
        calls = _Activities()
        ack_error = await flow.acknowledge_again(self._context(flow, job, message, calls), job.ack)
        await self._files.acknowledged_again(
            job, self.name, ack_error=ack_error, activities=calls.entries
        )
        self._messages.pop(job.instance_id, None)


class WorkerPool:
    """The file worker of one hub process, run beside the API or on its own."""

    def __init__(self, worker: FileWorker) -> None:
        self.worker = worker
        self._loop = BackgroundTask("file worker", worker.run, worker.shutdown.begun)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
