"""The one place that builds the hub from settings: connectors, store, engine."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from derms_bridge import metrics, tracing
from derms_bridge.connectors.file_storage import open_storage
from derms_bridge.connectors.file_storage.interface import FileStorages, Folder
from derms_bridge.connectors.file_storage.local import LocalFolderStorage
from derms_bridge.connectors.http import HttpConnection
from derms_bridge.connectors.mail import Mailer
from derms_bridge.credentials import Authenticator
from derms_bridge.engine.archive import Archive
from derms_bridge.engine.background import Shutdown
from derms_bridge.engine.big_messages import BigMessages
from derms_bridge.engine.database_outage import DatabaseOutage
from derms_bridge.engine.error_handler import CommonErrorHandler
from derms_bridge.engine.file_jobs.intake import FileIntake
from derms_bridge.engine.file_jobs.workers import FileWorker, WorkerPool
from derms_bridge.engine.liveness import Liveness, process_name
from derms_bridge.engine.notifications import ProcessNotifier
from derms_bridge.engine.operations import Operations
from derms_bridge.engine.purge import Purge, purge_flow
from derms_bridge.engine.redaction import Redactor
from derms_bridge.engine.runner import FlowEngine
from derms_bridge.engine.schedules import Scheduler
from derms_bridge.engine.storage import StorageWatch
from derms_bridge.engine.transfers import TransferIntake, TransferWorker
from derms_bridge.flows.registry import SCHEDULED_FLOWS
from derms_bridge.login_throttle import LoginThrottle
from derms_bridge.lookups import LookupFileError, Lookups, load_lookups
from derms_bridge.settings import Schedule, Settings, unsafe_settings
from derms_bridge.settings.retention import ArchiveSettings
from derms_bridge.store.database import open_engine
from derms_bridge.store.file_jobs import FileJobStore
from derms_bridge.store.hour_counts import fold_changes
from derms_bridge.store.instances import InstanceStore
from derms_bridge.store.login_failures import LoginFailures
from derms_bridge.store.processes import ProcessStore
from derms_bridge.store.retention import RetentionStore
from derms_bridge.store.schedules import ScheduleStore
from derms_bridge.store.staged_transfers import StagedTransferStore

log = logging.getLogger(__name__)


def secrets_in(value: Any) -> Iterator[str]:
    """Every secret value in the settings, so that none is ever written out."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
        if "://" in value.get_secret_value():
            password = value.get_secret_value().split("://", 1)[1].split("@", 1)[0]
            if ":" in password:
                yield password.split(":", 1)[1]
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_in(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from secrets_in(item)


def _files_of(directory: Path) -> frozenset[tuple[str, int, int]]:
    try:
        return frozenset(
            (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
            for entry in directory.glob("*.csv")
        )
    except OSError:
        return frozenset()


class LookupsHolder:
    """The lookups in force: replaced whole when an operator edits them in the console,
    and read again when their files change under the hub (`derms-bridge lookups import`,
    or another hub process's console), checked at most every `recheck_seconds`."""

    def __init__(
        self, lookups: Lookups, directory: Path | None = None, *, recheck_seconds: float = 2.0
    ) -> None:
        self.current = lookups
        self._directory = directory
        self._recheck_seconds = recheck_seconds
        self._files = _files_of(directory) if directory is not None else frozenset()
        self._next_check = time.monotonic() + recheck_seconds

    def __call__(self) -> Lookups:
        if self._directory is not None and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._recheck_seconds
            files = _files_of(self._directory)
            if files != self._files:
                self._files = files
                try:
                    self.current = load_lookups(self._directory)
                except LookupFileError as exc:
                    # The lookups in force stay: a flow never runs on half an edit.
                    log.error(
                        "lookups changed on disk but were not taken: %s", "; ".join(exc.problems)
                    )
        return self.current


@dataclass
class Hub:
    settings: Settings
    store: InstanceStore
    engine: FlowEngine
    #: What operators ask of the instances (the ops API, the console, the CLI).
    operations: Operations
    authenticator: Authenticator
    #: One throttle of failed logins for every way in: the API, /metrics, the console.
    login_throttle: LoginThrottle
    lookups: LookupsHolder
    connections: list[HttpConnection]
    files: FileJobStore
    intake: FileIntake
    workers: WorkerPool
    transfer_intake: TransferIntake
    transfers: TransferWorker
    scheduler: Scheduler
    #: Retention: the purge the scheduler runs as the job `purge`, and its dry run.
    purge: Purge
    #: The database's size and what holds it, as the console and /metrics show it.
    storage: StorageWatch
    liveness: Liveness
    database_outage: DatabaseOutage
    #: CPMCS's file stores as the flows reach them (the console checks them).
    stores: FileStorages
    #: This process's stop, shared by its workers.
    shutdown: Shutdown
    #: Big JSON messages, read by a worker process instead of on the event loop.
    big_messages: BigMessages = field(default_factory=BigMessages)

    def start(self, *, run_workers: bool = True) -> None:
        """The heartbeat; with `run_workers` also the file and transfer workers and the
        scheduler."""
        self.liveness.start()
        if run_workers:
            self.workers.start()
            self.transfers.start()
            self.scheduler.start()

    async def stop(self) -> None:
        """Stop as `shutdown` says (nothing more claimed, the work in flight given the
        grace, what is left given back), then say this process stopped and close."""
        self.shutdown.begin()
        stopped = await asyncio.gather(
            self.scheduler.stop(),
            self.workers.stop(),
            self.transfers.stop(),
            return_exceptions=True,
        )
        await self.liveness.stop()
        await self.aclose()
        for error in stopped:
            if error is not None:
                raise error

    async def run_until_signalled(self) -> None:
        """A process of workers without the API (`derms-bridge worker`): they run until
        SIGTERM or SIGINT, then `stop`."""
        self.start()
        try:
            await self.shutdown.until_signalled()
        finally:
            await self.stop()

    async def aclose(self) -> None:
        await self.storage.aclose()
        self.big_messages.close()
        for connection in self.connections:
            await connection.aclose()
        await self.store.aclose()
        await tracing.stop_exporting()


def freeze_startup_objects() -> None:
    """For a hub process that has started: what it has made by now lives as long as it
    does. Out of the cyclic collector's sight, a full collection walks only what came
    after: one over all of it took a serving hub 85-110 ms, in the middle of whichever
    upload or sending it fell in."""
    gc.collect()
    gc.freeze()


def local_file_stores(root: Path) -> FileStorages:
    """Both of CPMCS's stores as folders under `root` (ftp/, object-storage/<namespace>/)."""
    return FileStorages(
        ftp=LocalFolderStorage(root / "ftp"),
        object_storage=LocalFolderStorage(root / "object-storage"),
    )


def open_archive(settings: ArchiveSettings | None) -> Archive | None:
    """The purge's archive as the settings give it, if any."""
    if settings is None:
        return None
    return Archive(open_storage(settings.store), Folder(settings.folder, settings.namespace))


def build_hub(
    settings: Settings,
    lookups: Lookups | None = None,
    stores: FileStorages | None = None,
    *,
    command: str = "serve",
) -> Hub:
    """The hub's parts; `command` is what this process was started as (serve, worker,
    run), as the other hub processes see it."""
    for unsafe in unsafe_settings(settings):
        log.warning("unsafe setting: %s", unsafe)
    this_process = process_name()
    if settings.tracing is not None:
        tracing.start_exporting(
            settings.tracing, process=this_process, dropped=metrics.spans_dropped
        )
    holder = LookupsHolder(lookups or load_lookups(settings.lookups_dir), settings.lookups_dir)
    store = InstanceStore(open_engine(settings.database.url.get_secret_value()))
    cpmcs = HttpConnection("CPMCS", settings.connections.cpmcs, watcher=metrics.outbound_call_made)
    derms = {
        name: HttpConnection(f"DERMS {name}", connection, watcher=metrics.outbound_call_made)
        for name, connection in settings.connections.derms.items()
    }
    redact = Redactor(secrets_in(settings))
    mailer = Mailer(settings.smtp)
    shutdown = Shutdown(settings.processes.stop_grace_seconds)
    error_handler = CommonErrorHandler(store, mailer, holder, redact)
    files = metrics.MeteredFileStore(store)
    notifier = ProcessNotifier(mailer, holder, redact)
    worker = FileWorker(
        files=files,
        cpmcs=cpmcs,
        derms=derms,
        lookups=holder,
        error_handler=error_handler,
        notifier=notifier,
        settings=settings.segments,
        shutdown=shutdown,
    )
    staged_files = StagedTransferStore(store)
    stores = stores or FileStorages(
        ftp=open_storage(settings.file_stores.ftp),
        object_storage=open_storage(settings.file_stores.object_storage),
    )
    engine = FlowEngine(
        store=store,
        files=files,
        wake_workers=worker.wake,
        cpmcs=cpmcs,
        derms=derms,
        lookups=holder,
        error_handler=error_handler,
        enrollment_concurrency=settings.limits.enrollment_concurrency,
        notifier=notifier,
        stores=stores,
        staged_files=staged_files,
        wake_transfers=lambda: transfers.wake(),
        process_name=this_process,
        rejection_email_every=timedelta(minutes=settings.limits.rejection_email_minutes),
    )
    transfers = TransferWorker(
        engine=engine, staged=staged_files, settings=settings.segments, shutdown=shutdown
    )
    database_outage = DatabaseOutage(error_handler.alert_operators)
    schedules: dict[str, Schedule] = {key: each for key, each in settings.schedules.items()}
    schedules["purge"] = settings.retention.schedule
    purge = Purge(
        RetentionStore(store, settings.retention.batch_size),
        settings.retention,
        stopping=shutdown.begun,
        archive=open_archive(settings.retention.archive),
    )
    return Hub(
        settings=settings,
        store=store,
        engine=engine,
        operations=Operations(store, files, wake_workers=worker.wake),
        authenticator=Authenticator(settings.callers),
        login_throttle=LoginThrottle(
            LoginFailures(store, timedelta(seconds=settings.login_throttle.window_seconds)),
            settings.login_throttle,
        ),
        lookups=holder,
        connections=[cpmcs, *derms.values()],
        files=files,
        intake=FileIntake(
            store,
            files,
            holder,
            settings.segments,
            worker.wake,
            derms_connections={
                name: caller.derms_connection
                for name, caller in settings.callers.items()
                if caller.derms_connection is not None
            },
        ),
        workers=WorkerPool(worker),
        transfer_intake=TransferIntake(
            store, staged_files, settings.segments.max_file_bytes, transfers.wake
        ),
        transfers=transfers,
        scheduler=Scheduler(
            engine=engine,
            store=ScheduleStore(store),
            schedules=schedules,
            shutdown=shutdown,
            flows={**SCHEDULED_FLOWS, "purge": purge_flow(purge)},
        ),
        purge=purge,
        storage=StorageWatch(store, purge),
        stores=stores,
        liveness=Liveness(
            processes=ProcessStore(store),
            error_handler=error_handler,
            settings=settings.processes,
            name=engine.process_name,
            command=command,
            outage=database_outage,
            fold_counts=partial(fold_changes, store),
        ),
        database_outage=database_outage,
        shutdown=shutdown,
    )
