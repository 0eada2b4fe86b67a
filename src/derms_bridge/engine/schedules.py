"""Schedules: the scheduled flows (16, 17) and the hub's own jobs (the purge) started at
their cron ticks, or by an operator now.

Every hub process (`serve`, `worker`) runs the scheduler loop. At a due tick each one
tries to claim it in the database and one succeeds, so a tick runs once however many
processes share the database. A run holds its schedule under a lease that it renews
while it goes: a tick or a run-now that finds the lease held does not start a second
run beside it. A hub that was down runs the latest missed tick once when it is back,
not once per tick missed. A process that stops claims no tick more and gives its runs
the stop's grace, then cuts them short: their schedules are free again at once, and the
instances are given up as failed as those of any stopped process (liveness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from derms_bridge import metrics
from derms_bridge.catalog import flows_named
from derms_bridge.engine.background import BackgroundTask, CutShort, Shutdown
from derms_bridge.engine.runner import FlowEngine
from derms_bridge.flows.ports import FlowResult, ScheduledFlow
from derms_bridge.flows.registry import SCHEDULED_FLOWS
from derms_bridge.ids import new_instance_id
from derms_bridge.schemas.ops import Activity
from derms_bridge.schemas.schedules import LastRunView, ScheduleView
from derms_bridge.settings import Schedule
from derms_bridge.store.schedules import ScheduleStore

log = logging.getLogger(__name__)

#: How long a run holds its schedule without renewing; renewed three times as often.
LEASE_SECONDS = 60.0
#: The longest the loop sleeps, so that a schedule's row made by another process is seen.
MAX_SLEEP_SECONDS = 30.0


class UnknownScheduledFlow(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"no scheduled flow is called {name!r}; "
            f"the scheduled flows are {', '.join(SCHEDULED_FLOWS)}"
        )


class AlreadyRunning(Exception):
    """The flow's previous run still holds its schedule."""

    def __init__(self, flow: str, instance_id: str) -> None:
        super().__init__(f"{flow} is already running as instance {instance_id}")
        self.flow = flow
        self.instance_id = instance_id


@dataclass(frozen=True)
class StartedRun:
    flow: str
    instance_id: str
    done: asyncio.Task[FlowResult[Any]]


class Scheduler:
    def __init__(
        self,
        *,
        engine: FlowEngine,
        store: ScheduleStore,
        schedules: Mapping[str, Schedule],
        shutdown: Shutdown,
        flows: Mapping[str, ScheduledFlow[Any]] = SCHEDULED_FLOWS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        """`flows`: what may be scheduled or run now, by key (the scheduled flows, and the
        hub's own jobs such as the purge); `schedules`: when, for those that have one."""
        self._engine = engine
        self._store = store
        self.flows = dict(flows)
        self.schedules: dict[str, Schedule] = {key: each for key, each in schedules.items()}
        self._lease = timedelta(seconds=lease_seconds)
        #: Names this process in the claims it makes, for whoever reads the tables.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runs: dict[str, StartedRun] = {}
        self._shutdown = shutdown
        self._loop = BackgroundTask("scheduler", self.run, shutdown.begun)

    @staticmethod
    def flow_named(name: str) -> ScheduledFlow[Any]:
        """The scheduled flow a key (device_score_ftp) or an identifier names."""
        for info in flows_named(name):
            if info.key in SCHEDULED_FLOWS:
                return SCHEDULED_FLOWS[info.key]
        raise UnknownScheduledFlow(name)

    async def overview(self) -> list[ScheduleView]:
        """Every scheduled flow: its schedule (if any), next run, last run, and whether it runs."""
        now = datetime.now(UTC)
        states = await self._store.states()
        views = []
        for key, flow in self.flows.items():
            schedule = self.schedules.get(key)
            state = states.get(key)
            last = state.last_run if state is not None else None
            running = state.running_instance if state is not None else None
            views.append(
                ScheduleView(
                    flow=key,
                    flow_identifier=flow.info.identifier,
                    title=flow.info.title,
                    cron=schedule.cron if schedule else None,
                    timezone=schedule.timezone if schedule else None,
                    enabled=bool(schedule and schedule.enabled),
                    next_run=schedule.next_tick(now) if schedule and schedule.enabled else None,
                    last_run=LastRunView.model_validate(vars(last)) if last else None,
                    running=running is not None,
                    running_instance=running,
                )
            )
        return views

    async def run_now(
        self,
        name: str,
        *,
        caller: str | None,
        watcher: Callable[[Activity], None] | None = None,
    ) -> StartedRun:
        """Start a run of the flow at once, unless one is going (AlreadyRunning says which)."""
        flow = self._flow(name)
        key = flow.info.key
        instance_id = new_instance_id()
        await self._store.ensure(key, datetime.now(UTC))
        running = await self._store.take_lease(
            key, instance_id=instance_id, owner=self.owner, lease_until=self._lease_end()
        )
        if running is not None:
            raise AlreadyRunning(key, running)
        trigger = {"trigger": "run-now", "startedBy": caller}
        return await self._start(flow, instance_id, caller, trigger, [], watcher)

    async def claim_due(self, now: datetime | None = None) -> list[StartedRun]:
        """Claim each enabled schedule's due tick that no process has claimed, and start its
        run; the ticks missed while no hub ran collapse into the latest one."""
        now = now or datetime.now(UTC)
        states = await self._store.states()
        started = []
        for key, schedule in self.schedules.items():
            if not schedule.enabled:
                continue
            state = states.get(key)
            if state is None:
                await self._store.ensure(key, now)
                continue
            tick = schedule.latest_tick(now)
            if tick <= state.ticks_through:
                continue
            instance_id = new_instance_id()
            claim = await self._store.claim_tick(
                key, tick, instance_id=instance_id, owner=self.owner, lease_until=self._lease_end()
            )
            if claim.running_instance is not None:
                log.warning(
                    "schedule tick skipped: the previous run is still going",
                    extra={
                        "flow": key,
                        "tick": tick.isoformat(),
                        "instance_id": claim.running_instance,
                    },
                )
            if claim.instance_id is None:
                continue
            tick_text = tick.isoformat().replace("+00:00", "Z")
            trigger = {"trigger": "schedule", "tick": tick_text, "cron": schedule.cron}
            started.append(
                await self._start(
                    self.flows[key], instance_id, None, trigger, [("scheduleTick", tick_text)]
                )
            )
        return started

    def _flow(self, name: str) -> ScheduledFlow[Any]:
        """The flow (or job) of this scheduler a key or an identifier names."""
        for info in flows_named(name):
            if info.key in self.flows:
                return self.flows[info.key]
        raise UnknownScheduledFlow(name)

    async def finished(self, instance_id: str) -> FlowResult[Any]:
        """The result of a run this process started."""
        return await self._runs[instance_id].done

    def running_here(self) -> list[StartedRun]:
        return list(self._runs.values())

    def _lease_end(self) -> datetime:
        return datetime.now(UTC) + self._lease

    async def _start(
        self,
        flow: ScheduledFlow[Any],
        instance_id: str,
        caller: str | None,
        trigger: dict[str, Any],
        keys: list[tuple[str, str]],
        watcher: Callable[[Activity], None] | None = None,
    ) -> StartedRun:
        """The run's instance written, so that whoever started it can read it at once, then
        the run going on its own; the lease is given back if the instance cannot be written."""
        try:
            trace = await self._engine.record_scheduled(
                flow, instance_id=instance_id, caller=caller, trigger=trigger, keys=keys
            )
        except BaseException:
            await self._store.release(flow.info.key, instance_id)
            raise

        async def run() -> FlowResult[Any]:
            renewing = asyncio.create_task(self._keep_lease(flow.info.key, instance_id))
            try:
                result = await self._engine.run_scheduled(
                    flow,
                    instance_id=instance_id,
                    caller=caller,
                    keys=keys,
                    watcher=watcher,
                    trace=trace,
                )
            except BaseException:
                # Cut short by a stop: the run is given up as failed (liveness.py).
                metrics.schedule_run_finished(flow.info.key, "failed")
                raise
            else:
                metrics.schedule_run_finished(flow.info.key, result.status)
                return result
            finally:
                renewing.cancel()
                await self._store.release(flow.info.key, instance_id)
                del self._runs[instance_id]

        started = StartedRun(flow.info.key, instance_id, asyncio.create_task(run()))
        self._runs[instance_id] = started
        return started

    async def _keep_lease(self, flow: str, instance_id: str) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                if not await self._store.renew(flow, instance_id, self._lease_end()):
                    log.error("a run lost its schedule's lease", extra={"instance_id": instance_id})
                    return
            except Exception:
                # The database may be back before the lease ends; the next renewal tells.
                log.exception("schedule lease not renewed", extra={"instance_id": instance_id})

    def _seconds_to_next_tick(self) -> float:
        now = datetime.now(UTC)
        ticks = [s.next_tick(now) for s in self.schedules.values() if s.enabled]
        if not ticks:
            return MAX_SLEEP_SECONDS
        # A little past the tick, so that the clock read on waking is not still before it.
        wait = (min(ticks) - now).total_seconds() + 0.01
        return min(max(wait, 0.01), MAX_SLEEP_SECONDS)

    async def run(self, stop: asyncio.Event) -> None:
        """The scheduler loop, until `stop`; then the runs it started are waited for, within
        a shutdown's grace."""
        while not stop.is_set():
            try:
                await self.claim_due()
            except Exception:
                log.exception("schedule round failed; trying again at the next tick")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._seconds_to_next_tick())
        runs = [run.done for run in self._runs.values()]
        if runs:
            with contextlib.suppress(CutShort):
                await self._shutdown.within_grace(asyncio.gather(*runs, return_exceptions=True))

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
