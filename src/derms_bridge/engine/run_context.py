"""What one run of a flow carries: its calls recorded as activities, the business keys
it learns, its way to the error handler and to the process emails, and the flows it
runs as children."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from derms_bridge import tracing
from derms_bridge.catalog import FlowInfo
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.notifications import ProcessNotifier
from derms_bridge.flows.ports import FlowResult, SyncFlow
from derms_bridge.schemas.ops import Activity
from derms_bridge.store.instances import (
    utcnow,
)
from derms_bridge.tracing import Span, TraceRef

if TYPE_CHECKING:
    from derms_bridge.engine.runner import FlowEngine

log = logging.getLogger(__name__)


#: As much of a call's path as an activity keeps (store/tables.py ActivityRow.path).
ACTIVITY_PATH_CHARS = 400


def activity_of(call: Activity) -> Activity:
    """An outbound call as its instance's activity keeps it."""
    return replace(
        call,
        path=call.path[:ACTIVITY_PATH_CHARS] if call.path else call.path,
        duration_ms=round(call.duration_ms, 3),
    )


def instance_span(
    flow_key: str,
    instance_id: str,
    *,
    caller: str | None,
    resubmit_of: str | None = None,
    repeats: TraceRef | None = None,
) -> AbstractContextManager[Span]:
    """The span of an instance, where it is written: the request's that brought it
    (continuing its caller's traceparent), linked to the run it resubmits."""
    return tracing.instance(
        f"instance {flow_key}",
        links=[repeats],
        attributes={
            "derms_bridge.instance_id": instance_id,
            "derms_bridge.flow": flow_key,
            "derms_bridge.caller": caller,
            "derms_bridge.resubmit_of": resubmit_of,
        },
    )


def ended_as(span: Span, status: str) -> None:
    """An instance's or run's span says how it ended; a failed one is an error."""
    span.set_attribute("derms_bridge.status", status)
    if status == "failed":
        tracing.failed(span, status)


def step_span(name: str, instance_id: str) -> AbstractContextManager[Span]:
    """A step the engine runs for an instance (the error handler, a process email)."""
    return tracing.span(name, attributes={"derms_bridge.instance_id": instance_id})


@dataclass
class FlowRun:
    """One run of a flow: its activity and business keys, and its way to the error handler."""

    instance_id: str
    flow: FlowInfo
    handler: CommonErrorHandler
    keys: list[tuple[str, str]]
    new_keys: list[tuple[str, str]] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    #: Told of each activity as it happens (`derms-bridge run` prints them).
    watcher: Callable[[Activity], None] | None = None

    def observe(self, call: Activity) -> None:
        self._add(activity_of(call))

    def _add(self, activity: Activity) -> None:
        self.activities.append(activity)
        if self.watcher is not None:
            self.watcher(activity)

    def mail_problem(self, operation: str, problem: str | None) -> None:
        if problem is not None:
            self._add(
                Activity(
                    target="smtp",
                    operation=operation,
                    method=None,
                    path=None,
                    http_status=None,
                    duration_ms=0.0,
                    error=problem,
                    at=utcnow(),
                )
            )

    def add_business_key(self, kind: str, value: str) -> None:
        self.new_keys.append((kind, value))

    async def report(self, error: str) -> None:
        with step_span("error handler", self.instance_id):
            mail_problem = await self.handler.handle(
                self.flow, self.instance_id, self.keys + self.new_keys, error
            )
        self.mail_problem("errorEmail", mail_problem)


@dataclass
class RunNotices:
    """The process emails of one run, their failures kept as its activity."""

    run: FlowRun
    notifier: ProcessNotifier

    async def no_file(self, summary: str) -> None:
        with step_span("noFile email", self.run.instance_id):
            problem = await self.notifier.no_file(self.run.flow, self.run.instance_id, summary)
        self.run.mail_problem("noFileEmail", problem)

    async def process_complete(self, outcome: str, summary: str, *, failed: bool) -> None:
        with step_span("processComplete email", self.run.instance_id):
            problem = await self.notifier.process_complete(
                self.run.flow,
                self.run.instance_id,
                self.run.keys + self.run.new_keys,
                outcome,
                summary,
                whatever_the_flag=failed,
            )
        self.run.mail_problem("processCompleteEmail", problem)


class ChildRuns:
    """Runs a linked flow as its own instance, child of the running one."""

    def __init__(self, engine: FlowEngine, parent_id: str, caller: str | None) -> None:
        self._engine = engine
        self._parent_id = parent_id
        self._caller = caller

    async def run(self, flow: SyncFlow[Any, Any], message: BaseModel) -> FlowResult[Any]:
        return await self._engine.run_flow(
            flow, message, caller=self._caller, parent_id=self._parent_id
        )
