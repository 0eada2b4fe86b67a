"""Hub processes that stop mid-run: their runs are failed and emailed about, not left
in progress for ever.

Every hub process (`serve`, `worker`, `run`) says it is alive every
`processes.heartbeat_seconds`, and at each heartbeat gives up the runs in progress of
any process that stopped or has not been heard from for `processes.stopped_after_seconds`:
a flow's instance whose process was killed, and the run of a schedule (16, 17) or a child
of flow 15 (18, 19). An operator then resubmits it or runs it again. The file flows (7, 8)
and flow 15 itself are not among them: their workers' leases hand them to another worker.

The heartbeat also folds the changes to the dashboard's counts that PostgreSQL's triggers
appended (store/hour_counts.py): every process beats, so they are folded while any runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from derms_bridge.catalog import BY_KEY
from derms_bridge.engine.background import BackgroundTask
from derms_bridge.engine.database_outage import DatabaseOutage
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.errors import DatabaseUnavailable
from derms_bridge.settings import Processes
from derms_bridge.store.instances import utcnow
from derms_bridge.store.processes import AbandonedRun, HubProcess, ProcessStore

log = logging.getLogger(__name__)


def process_name() -> str:
    """This process, as the instances it runs name it: host, pid and a few random letters
    (a pid comes back after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Liveness:
    def __init__(
        self,
        *,
        processes: ProcessStore,
        error_handler: CommonErrorHandler,
        settings: Processes,
        name: str,
        command: str,
        outage: DatabaseOutage,
        fold_counts: Callable[[], Awaitable[object]],
    ) -> None:
        self.name = name
        self._outage = outage
        self._command = command
        self._processes = processes
        self._errors = error_handler
        self._fold_counts = fold_counts
        self._heartbeat = settings.heartbeat_seconds
        self._silence = timedelta(seconds=settings.stopped_after_seconds)
        self._heartbeats = BackgroundTask("liveness", self.run)

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeats until `stop`; then the process is marked stopped, so that what it
        leaves in progress is given up without waiting for its silence."""
        while not stop.is_set():
            try:
                await self.beat()
                await self.give_up_stopped()
                await self._fold_counts()
            except DatabaseUnavailable:
                pass  # told by the outage, once
            except Exception:
                # The database may be back by the next heartbeat.
                log.exception("heartbeat failed", extra={"process": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._heartbeat)
        try:
            await self._processes.stopped(self.name)
        except Exception:
            log.exception("could not mark this process stopped", extra={"process": self.name})

    async def beat(self) -> None:
        """Say this process is alive: a write, so it also tells whether a database outage
        has begun or ended."""
        try:
            await self._processes.beat(self.name, self._command)
        except DatabaseUnavailable as refused:
            self._outage.refused(refused)
            raise
        self._outage.wrote()

    async def give_up_stopped(self) -> list[AbandonedRun]:
        """Fail the runs of the processes that stopped, each emailed once."""
        abandoned = await self._processes.give_up_runs(utcnow() - self._silence)
        for run in abandoned:
            log.error(
                "run given up: its process stopped",
                extra={"instance_id": run.instance_id, "flow": run.flow},
            )
            await self._errors.handle(BY_KEY[run.flow], run.instance_id, run.keys, run.error)
        return abandoned

    async def alive(self) -> list[HubProcess]:
        """The hub processes on this database heard from within the silence limit."""
        return await self._processes.alive(utcnow() - self._silence)

    def start(self) -> None:
        self._heartbeats.start()

    async def stop(self) -> None:
        await self._heartbeats.stop()
