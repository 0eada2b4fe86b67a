"""Runs a flow for one message: the instance first, then the flow, then its outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from derms_bridge import metrics, tracing
from derms_bridge.catalog import BY_KEY
from derms_bridge.connectors.cpmcs import CpmcsClient
from derms_bridge.connectors.derms import DermsClient
from derms_bridge.connectors.file_storage.interface import FileStorages
from derms_bridge.connectors.file_storage.observed import ObservedStorage
from derms_bridge.connectors.http import HttpConnection
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.notifications import ProcessNotifier
from derms_bridge.engine.rejections import ReceivedBody, identifiers_in
from derms_bridge.engine.run_context import (
    ChildRuns,
    FlowRun,
    RunNotices,
    ended_as,
    instance_span,
)
from derms_bridge.flows.ports import FlowContext, FlowResult, ScheduledFlow, SyncFlow
from derms_bridge.flows.registry import FILE_FLOWS, SYNC_FLOWS, TRANSFER_FLOWS
from derms_bridge.ids import new_instance_id
from derms_bridge.logs import instance_logged
from derms_bridge.lookups import Lookups
from derms_bridge.schemas.ops import Activity
from derms_bridge.schemas.problems import CONFIGURATION_ERROR, problem_body
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.instance_records import StoredMessage
from derms_bridge.store.instances import AlreadyResubmitted, InstanceGone, InstanceStore
from derms_bridge.store.staged_transfers import StagedTransferStore
from derms_bridge.tracing import TraceRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What the caller gets: an HTTP status and a body (a reply or a problem)."""

    instance_id: str
    status: str
    http_status: int
    reply: Any
    error: str | None

    @property
    def is_fault(self) -> bool:
        return self.http_status >= 400


class InstanceNotFound(Exception):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id} does not exist")


class NotResubmittable(Exception):
    """The instance's flow cannot be run again from its stored payload."""


def resubmit_refusal(instance_id: str, stored: StoredMessage) -> str | None:
    """Why an instance may not be resubmitted, or None: the one rule the API, the console
    and the CLI follow, one by one or in bulk. Each instance is resubmitted once at most;
    after that its latest run is the one to resubmit, so what succeeded is never sent
    again, however often a selection of failures is resubmitted."""
    if stored.status == "rejected":
        return (
            "a rejected message cannot be resubmitted as it came: its body did not pass the "
            f"route's checks. Read it (GET /ops/instances/{instance_id}), correct it and "
            "have its sender send it again"
        )
    if stored.payload_purged_at is not None:
        return (
            f"its payload was purged on {stored.payload_purged_at:%Y-%m-%d} (retention): "
            "nothing is left to send again"
        )
    if stored.resubmitted_as is None:
        return None
    if stored.status == "resolved":
        return f"it was resubmitted as {stored.resubmitted_as}, which succeeded: nothing is left"
    return f"it was resubmitted already, as {stored.resubmitted_as}: resubmit that run if it failed"


class FlowEngine:
    def __init__(
        self,
        *,
        store: InstanceStore,
        files: FileJobStore,
        wake_workers: Callable[[], None],
        cpmcs: HttpConnection,
        derms: Mapping[str, HttpConnection],
        lookups: Callable[[], Lookups],
        error_handler: CommonErrorHandler,
        enrollment_concurrency: int,
        notifier: ProcessNotifier,
        stores: FileStorages,
        staged_files: StagedTransferStore,
        wake_transfers: Callable[[], None],
        process_name: str,
        rejection_email_every: timedelta,
    ) -> None:
        self.store = store
        #: This hub process, named in the instances it runs (engine/liveness.py).
        self.process_name = process_name
        self._files = files
        self._wake_workers = wake_workers
        self._cpmcs = cpmcs
        self._derms = derms
        self._lookups = lookups
        self._error_handler = error_handler
        self._enrollment_concurrency = enrollment_concurrency
        self._notifier = notifier
        self._stores = stores
        self._staged_files = staged_files
        self._wake_transfers = wake_transfers
        self._rejection_email_every = rejection_email_every

    async def run_sync(
        self,
        flow: SyncFlow[Any, Any],
        message: Any,
        *,
        caller: str | None,
        resubmit_of: str | None = None,
        parent_id: str | None = None,
        repeats: TraceRef | None = None,
    ) -> RunOutcome:
        """Run a flow for a caller waiting on its answer: the reply, or the fault it gets."""
        _, outcome = await self._run_new(
            flow,
            message,
            caller=caller,
            resubmit_of=resubmit_of,
            parent_id=parent_id,
            instance_id=new_instance_id(),
            repeats=repeats,
        )
        return outcome

    async def run_flow(
        self,
        flow: SyncFlow[Any, Any],
        message: Any,
        *,
        caller: str | None,
        resubmit_of: str | None = None,
        parent_id: str | None = None,
        instance_id: str | None = None,
        repeats: TraceRef | None = None,
    ) -> FlowResult[Any]:
        """Run a flow as a new instance; `repeats`: the trace of the run it resubmits,
        linked from this one's."""
        result, _ = await self._run_new(
            flow,
            message,
            caller=caller,
            resubmit_of=resubmit_of,
            parent_id=parent_id,
            instance_id=instance_id or new_instance_id(),
            repeats=repeats,
        )
        return result

    async def _run_new(
        self,
        flow: SyncFlow[Any, Any],
        message: Any,
        *,
        caller: str | None,
        resubmit_of: str | None,
        parent_id: str | None,
        instance_id: str,
        repeats: TraceRef | None,
    ) -> tuple[FlowResult[Any], RunOutcome]:
        keys = flow.business_keys(message)
        with instance_span(
            flow.info.key, instance_id, caller=caller, resubmit_of=resubmit_of, repeats=repeats
        ) as span:
            await self.store.create(
                instance_id=instance_id,
                flow=flow.info.key,
                caller=caller,
                payload=message.model_dump(mode="json", exclude_none=True),
                keys=keys,
                resubmit_of=resubmit_of,
                parent_id=parent_id,
                runner=self.process_name,
                trace=tracing.ref_of(span),
            )
            metrics.instance_received(flow.info.key)
            result, outcome = await self._run(flow, message, instance_id, caller, keys)
            ended_as(span, result.status)
            return result, outcome

    async def run_written(
        self, flow: SyncFlow[Any, Any], message: Any, *, instance_id: str, caller: str | None
    ) -> FlowResult[Any]:
        """Run a flow on an instance written before (a received file's, kept at intake),
        perhaps not for the first time: its activities follow those of earlier runs."""
        keys = flow.business_keys(message)
        with tracing.span(
            f"run {flow.info.key}",
            parent=tracing.under(await self.store.trace_of(instance_id)),
            attributes={"derms_bridge.instance_id": instance_id},
        ) as span:
            result, _ = await self._run(flow, message, instance_id, caller, keys, after_kept=True)
            ended_as(span, result.status)
            return result

    async def _run(
        self,
        flow: SyncFlow[Any, Any],
        message: Any,
        instance_id: str,
        caller: str | None,
        keys: list[tuple[str, str]],
        *,
        after_kept: bool = False,
    ) -> tuple[FlowResult[Any], RunOutcome]:
        """The run's result, and the answer it gives (the reply written with its outcome)."""
        started = time.perf_counter()
        with instance_logged(instance_id, flow.info.key), metrics.instance_running(flow.info.key):
            result, outcome = await self._run_recorded(
                flow, message, instance_id, caller, keys, after_kept=after_kept
            )
        metrics.instance_finished(flow.info.key, result.status, time.perf_counter() - started)
        return result, outcome

    async def _run_recorded(
        self,
        flow: SyncFlow[Any, Any],
        message: Any,
        instance_id: str,
        caller: str | None,
        keys: list[tuple[str, str]],
        *,
        after_kept: bool,
    ) -> tuple[FlowResult[Any], RunOutcome]:
        run = FlowRun(
            instance_id=instance_id, flow=flow.info, handler=self._error_handler, keys=keys
        )
        context = self._context(run, caller)
        try:
            result = await flow.run(message, context)
        except Exception as exc:
            log.exception("flow crashed", extra={"instance_id": instance_id, "flow": flow.info.key})
            error = f"the flow stopped: {type(exc).__name__}: {exc}"
            await run.report(error)
            result = FlowResult.failed(flow.crash_reply(message, error), error)
        outcome = _outcome(instance_id, result)
        await self.store.finish(
            instance_id,
            status=result.status,
            reply=outcome.reply,
            error=result.error,
            activities=run.activities,
            keys=run.new_keys,
            skipped_reason=result.skipped_reason,
            after_kept=after_kept,
        )
        return result, outcome

    async def record_scheduled(
        self,
        flow: ScheduledFlow[Any],
        *,
        instance_id: str,
        caller: str | None,
        trigger: dict[str, Any],
        keys: list[tuple[str, str]],
    ) -> TraceRef | None:
        """The instance of a run a schedule or an operator starts; `trigger` is its payload.
        Where its trace hangs, for run_scheduled."""
        with instance_span(flow.info.key, instance_id, caller=caller) as span:
            trace = tracing.ref_of(span)
            await self.store.create(
                instance_id=instance_id,
                flow=flow.info.key,
                caller=caller,
                payload=trigger,
                keys=keys,
                runner=self.process_name,
                trace=trace,
            )
        metrics.instance_received(flow.info.key)
        return trace

    async def run_scheduled(
        self,
        flow: ScheduledFlow[Any],
        *,
        instance_id: str,
        caller: str | None,
        keys: list[tuple[str, str]],
        watcher: Callable[[Activity], None] | None = None,
        trace: TraceRef | None = None,
    ) -> FlowResult[Any]:
        """Run a flow whose instance record_scheduled wrote, in its trace."""
        with tracing.span(
            f"run {flow.info.key}",
            parent=tracing.under(trace),
            attributes={"derms_bridge.instance_id": instance_id},
        ) as span:
            result = await self._run_scheduled(flow, instance_id, caller, keys, watcher)
            ended_as(span, result.status)
            return result

    async def _run_scheduled(
        self,
        flow: ScheduledFlow[Any],
        instance_id: str,
        caller: str | None,
        keys: list[tuple[str, str]],
        watcher: Callable[[Activity], None] | None,
    ) -> FlowResult[Any]:
        run = FlowRun(
            instance_id=instance_id,
            flow=flow.info,
            handler=self._error_handler,
            keys=keys,
            watcher=watcher,
        )
        started = time.perf_counter()
        with instance_logged(instance_id, flow.info.key):
            try:
                result = await flow.run(self._context(run, caller))
            except Exception as exc:
                log.exception("flow crashed")
                error = f"the flow stopped: {type(exc).__name__}: {exc}"
                await run.report(error)
                result = FlowResult.failed(None, error)
        metrics.instance_finished(flow.info.key, result.status, time.perf_counter() - started)
        await self.store.finish(
            instance_id,
            status=result.status,
            reply=(
                result.reply.model_dump(mode="json", exclude_none=True)
                if result.reply is not None
                else None
            ),
            error=result.error,
            activities=run.activities,
            keys=run.new_keys,
            skipped_reason=result.skipped_reason,
        )
        return result

    async def keep_rejected(
        self,
        flow_key: str,
        *,
        caller: str,
        body: ReceivedBody,
        problem: dict[str, Any],
        errors: Sequence[dict[str, Any]],
    ) -> str:
        """Keep a message its route refused before the flow ran, with the problem its
        sender was answered (`problem`, naming the new instance once written); the error
        email goes out once per caller in `limits.rejection_email_minutes`. Its id."""
        instance_id = new_instance_id()
        flow = BY_KEY[flow_key]
        keys = identifiers_in(body.text())
        detail = str(problem.get("detail", ""))
        reply = {**problem, "instanceId": instance_id}
        if errors:
            reply["errors"] = list(errors)
        await self.store.create_rejected(
            instance_id=instance_id,
            flow=flow_key,
            caller=caller,
            payload=body.as_payload(),
            reply=reply,
            error=detail,
            keys=keys,
            trace=tracing.current_ref(),
        )
        metrics.instance_received(flow_key)
        metrics.instance_finished(flow_key, "rejected", None)
        with instance_logged(instance_id, flow_key):
            await self._error_handler.handle_rejection(
                flow,
                instance_id,
                keys,
                f"HTTP {problem.get('status')}: {detail}",
                caller=caller,
                quiet_for=self._rejection_email_every,
            )
        return instance_id

    def _context(self, run: FlowRun, caller: str | None) -> FlowContext:
        lookups = self._lookups()
        return FlowContext(
            cpmcs=CpmcsClient(self._cpmcs, run.observe),
            derms=DermsClient(self._derms, lookups, run.observe),
            lookups=lookups,
            errors=run,
            run=run,
            children=ChildRuns(self, run.instance_id, caller),
            concurrency=self._enrollment_concurrency,
            stores=FileStorages(
                ftp=ObservedStorage(self._stores.ftp, "ftp", run.observe),
                object_storage=ObservedStorage(
                    self._stores.object_storage, "object storage", run.observe
                ),
            ),
            received_files=self._staged_files,
            notices=RunNotices(run, self._notifier),
        )

    async def resubmit(self, instance_id: str, *, caller: str | None) -> RunOutcome:
        """Run the instance's flow again from its stored payload, linked to the old run."""
        stored = await self.store.payload_of(instance_id)
        if stored is None:
            raise InstanceNotFound(instance_id)
        refusal = resubmit_refusal(instance_id, stored)
        if refusal is not None:
            raise NotResubmittable(refusal)
        flow_key, payload = stored.flow, stored.payload
        if flow_key in TRANSFER_FLOWS:
            # The kept file is passed on again, by a worker, on the same instance.
            if not await self._staged_files.resume(instance_id):
                raise NotResubmittable("the file is still being transferred, or was transferred")
            self._wake_transfers()
            return _handed_to_workers(instance_id)
        if flow_key in FILE_FLOWS:
            # A file's run goes again from its kept segments, those CPMCS has not taken.
            if not await self._files.resume(instance_id):
                raise NotResubmittable("the file is still being sent, or was sent whole")
            self._wake_workers()
            return _handed_to_workers(instance_id)
        flow = SYNC_FLOWS.get(flow_key)
        if flow is None:
            raise NotResubmittable(f"flow {flow_key} cannot be resubmitted from its payload")
        try:
            message = flow.message_model.model_validate(payload)
        except ValidationError as exc:
            raise NotResubmittable(f"the stored payload no longer validates: {exc}") from None
        try:
            outcome = await self.run_sync(
                flow,
                message,
                caller=caller,
                resubmit_of=instance_id,
                parent_id=stored.parent_id,
                repeats=stored.trace,
            )
        except AlreadyResubmitted as exc:
            raise NotResubmittable(
                f"it was resubmitted meanwhile, as {exc.later_id}: resubmit that run if it failed"
            ) from None
        except InstanceGone:
            raise InstanceNotFound(instance_id) from None
        if outcome.status in ("succeeded", "skipped"):
            # A skipped message is one the reference leaves alone: that is its right end.
            for flow_resolved in await self.store.resolve_resubmitted(instance_id):
                metrics.instance_resolved(flow_resolved)
        if stored.parent_id is not None and outcome.status == "succeeded":
            # A child (an acknowledgement, flows 12 and 14) was all its parent lacked.
            await self.store.resolve_parent(stored.parent_id, outcome.instance_id)
        return outcome


def _handed_to_workers(instance_id: str) -> RunOutcome:
    return RunOutcome(
        instance_id=instance_id, status="in_progress", http_status=202, reply=None, error=None
    )


def _outcome(instance_id: str, result: FlowResult[Any]) -> RunOutcome:
    """The HTTP answer of a run: its reply, or the fault the caller gets (502, 504 on timeout,
    500 when the hub's configuration stopped it before any call)."""
    if result.reply is not None:
        return RunOutcome(
            instance_id=instance_id,
            status=result.status,
            http_status=200,
            reply=result.reply.model_dump(mode="json", exclude_none=True),
            error=result.error,
        )
    if result.misconfigured:
        status, problem_type = 500, CONFIGURATION_ERROR
    else:
        status, problem_type = (504 if result.timed_out else 502), None
    detail = result.error or "the target failed"
    return RunOutcome(
        instance_id=instance_id,
        status=result.status,
        http_status=status,
        reply=problem_body(status, detail, instance_id=instance_id, problem_type=problem_type),
        error=result.error,
    )
