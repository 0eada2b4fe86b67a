"""derms-bridge: one command for running, checking and operating the hub."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvicorn
from rich.console import Console

from derms_bridge.lookups import LookupFileError, load_lookups, sandbox_lookups_dir
from derms_bridge.settings import (
    DEFAULT_SETTINGS_FILE,
    Settings,
    SettingsError,
    load_settings,
    lookups_dir_of,
)

if TYPE_CHECKING:
    from derms_bridge.engine.operations import Operations

app = typer.Typer(
    help="The integration hub between Oracle Utilities CPMCS and Edge DERMS.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="the settings file", envvar="DERMS_BRIDGE_CONFIG"),
]

EXIT_CONFIG = 2

T = TypeVar("T")


def _settings_or_exit(path: Path) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None


@app.command("check-config")
def check_config(config: ConfigOption = DEFAULT_SETTINGS_FILE) -> None:
    """Load the settings and every lookup; report each mistake with its file, line and field."""
    problems: list[str] = []
    settings = None
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        problems.extend(exc.problems)
    lookups_dir = settings.lookups_dir if settings else lookups_dir_of(config)
    try:
        lookups = load_lookups(lookups_dir)
    except LookupFileError as exc:
        problems.extend(exc.problems)
        lookups = None
    if settings is not None and lookups is not None:
        routing = lookups.tables["Routing"]
        for division, name in routing.rows.items():
            if name not in settings.connections.derms:
                problems.append(
                    f"{lookups_dir / routing.full_name}.csv:{routing.lines[division]}: "
                    f"division {division!r} goes to DERMS connection {name!r}, "
                    f"which {config} does not define"
                )
    if problems:
        for problem in problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG)
    assert settings is not None
    assert lookups is not None
    out.print(
        f"[green]ok[/] {config}: {1 + len(settings.connections.derms)} connections, "
        f"{len(settings.callers)} callers; {len(lookups.tables)} lookups in {lookups_dir}",
        highlight=False,
    )


@app.command()
def migrate(config: ConfigOption = DEFAULT_SETTINGS_FILE) -> None:
    """Bring the database schema to the newest version."""
    from derms_bridge.store.database import migrate as run_migrations

    settings = _settings_or_exit(config)
    run_migrations(settings.database.url.get_secret_value())
    out.print("[green]ok[/] database schema is current")


def _share_metrics(settings: Settings) -> None:
    """The hub processes of this machine keep their counts in one directory, which
    prometheus-client must be told before it is first imported."""
    directory = settings.metrics.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from derms_bridge.metrics import forget_dead_processes

    forget_dead_processes(directory)


def _log_as_json_lines(settings: Settings, log_level: str) -> None:
    from derms_bridge.bootstrap import secrets_in
    from derms_bridge.engine.redaction import Redactor
    from derms_bridge.logs import configure_logging

    configure_logging(log_level.upper(), Redactor(secrets_in(settings)))


def _serve(settings: Settings, host: str, port: int, log_level: str) -> None:
    _share_metrics(settings)
    from derms_bridge.api.app import create_app
    from derms_bridge.api.http_server import BoundedHeadProtocol
    from derms_bridge.bootstrap import build_hub
    from derms_bridge.store.database import migrate as run_migrations

    _log_as_json_lines(settings, log_level)
    try:
        lookups = load_lookups(settings.lookups_dir)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if settings.database.migrate_on_start:
        run_migrations(settings.database.url.get_secret_value())
    hub = build_hub(settings, lookups)
    uvicorn.run(
        create_app(hub),
        host=host,
        port=port,
        log_config=None,
        log_level=log_level.lower(),
        http=BoundedHeadProtocol,
        # uvicorn believes X-Forwarded-* from loopback unless told otherwise: any local
        # process could then pose as any address or as TLS.
        proxy_headers=bool(settings.server.trusted_proxies),
        forwarded_allow_ips=settings.server.trusted_proxies,
    )


@app.command()
def serve(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    host: Annotated[str | None, typer.Option(help="overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides server.port")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the hub: the trigger routes, the operations API and the flows."""
    settings = _settings_or_exit(config)
    if not settings.callers:
        err.print(
            "[red]error[/] no callers are configured, so nobody could call the hub; "
            "add them under `callers:` (see docs/configuration.md)",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    _serve(settings, host or settings.server.host, port or settings.server.port, log_level)


@app.command()
def worker(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Send the file flows' segments and transfers, and run the schedules, without serving
    the API (run as many as you like, on as many machines, against one PostgreSQL)."""
    import asyncio
    import signal

    settings = _settings_or_exit(config)
    _share_metrics(settings)
    from derms_bridge.bootstrap import build_hub, freeze_startup_objects

    _log_as_json_lines(settings, log_level)
    try:
        lookups = load_lookups(settings.lookups_dir)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None

    async def work() -> None:
        hub = build_hub(settings, lookups, command="worker")
        freeze_startup_objects()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await asyncio.gather(
                hub.workers.worker.run(stop),
                hub.transfers.run(stop),
                hub.scheduler.run(stop),
                hub.liveness.run(stop),
            )
        finally:
            await hub.aclose()

    asyncio.run(work())


EXIT_RUN_FAILED = 1


@app.command("run")
def run_now(
    flow: Annotated[
        str, typer.Argument(help="device_score_ftp or device_score_os, or its identifier")
    ],
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
) -> None:
    """Run a scheduled flow now, as its schedule would, and show each step as it happens.

    Exit code 0 when the run succeeded (or found no file), 1 when it failed or another run
    of the flow was still going, 2 for an unknown flow or unusable settings.
    """
    import asyncio

    from derms_bridge.bootstrap import build_hub
    from derms_bridge.engine.schedules import AlreadyRunning, Scheduler, UnknownScheduledFlow
    from derms_bridge.flows.ports import FlowResult
    from derms_bridge.schemas.ops import Activity
    from derms_bridge.store.database import migrate as run_migrations

    settings = _settings_or_exit(config)
    try:
        key = Scheduler.flow_named(flow).info.key
        lookups = load_lookups(settings.lookups_dir)
    except UnknownScheduledFlow as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if settings.database.migrate_on_start:
        run_migrations(settings.database.url.get_secret_value())

    def show(activity: Activity) -> None:
        mark = "[red]x[/]" if activity.error else "[green]ok[/]"
        status = f" HTTP {activity.http_status}" if activity.http_status is not None else ""
        problem = f": {activity.error}" if activity.error else ""
        out.print(
            f"  {mark} {activity.target} {activity.operation} {activity.path or ''}{status} "
            f"({activity.duration_ms:.0f} ms){problem}",
            highlight=False,
        )

    async def run() -> tuple[str, FlowResult[Any]]:
        hub = build_hub(settings, lookups, command="run")
        hub.liveness.start()
        try:
            started = await hub.scheduler.run_now(key, caller="cli", watcher=show)
            out.print(f"{key}: instance {started.instance_id}", highlight=False)
            with out.status(f"running {key}", spinner="dots"):
                result = await started.done
            return started.instance_id, result
        finally:
            await hub.liveness.stop()
            await hub.aclose()

    try:
        instance_id, result = asyncio.run(run())
    except AlreadyRunning as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_RUN_FAILED) from None
    colour = "red" if result.status == "failed" else "green"
    out.print(
        f"[{colour}]{result.status}[/] {result.error or result.skipped_reason or ''}",
        highlight=False,
    )
    if result.reply is not None:
        out.print_json(data=result.reply.model_dump(mode="json"))
    out.print(f"details: GET /ops/instances/{instance_id}", highlight=False)
    if result.status == "failed":
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="the hub's port")] = 8080,
    cpmcs_port: Annotated[int | None, typer.Option(help="default: the hub's port + 1")] = None,
    derms_port: Annotated[int | None, typer.Option(help="default: the hub's port + 2")] = None,
    smtp_port: Annotated[int | None, typer.Option(help="default: the hub's port + 3")] = None,
    ftp_port: Annotated[int | None, typer.Option(help="default: the hub's port + 4")] = None,
    object_store_port: Annotated[
        int | None, typer.Option(help="default: the hub's port + 5")
    ] = None,
    database: Annotated[str, typer.Option(help="database URL")] = "sqlite:///var/sandbox.db",
    lookups: Annotated[
        Path | None,
        typer.Option(help="lookups directory; default: var/sandbox-lookups, a copy of the shipped"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "warning",
) -> None:
    """Run the hub with simulated CPMCS and DERMS, an SMTP sink, an FTP server and an
    object store, all on loopback."""
    try:
        from derms_bridge.sandbox.run import (
            SandboxPorts,
            banner,
            prepare_sandbox_files,
            sandbox_settings,
            start_simulators,
        )
    except ImportError as missing:
        err.print(
            f"[red]error[/] the sandbox needs {missing.name}: "
            "pip install 'derms-bridge\\[sandbox]'",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE) from None

    ports = SandboxPorts(
        hub=port,
        cpmcs=cpmcs_port,
        derms=derms_port,
        smtp=smtp_port,
        ftp=ftp_port,
        object_store=object_store_port,
    )
    lookups_dir = lookups or sandbox_lookups_dir(Path("var"))
    files = prepare_sandbox_files(Path("var"), load_lookups(lookups_dir))
    settings = sandbox_settings(ports, database, lookups_dir, files)
    simulators = start_simulators(ports, files, out)
    out.print(
        banner(ports, database, files, lookups_dir), highlight=False, markup=False, soft_wrap=True
    )
    sys.stdout.flush()
    try:
        _serve(settings, settings.server.host, ports.hub, log_level)
    finally:
        simulators.stop()


@app.command("hash-password")
def hash_password_command() -> None:
    """Print the argon2 hash of a caller's password, for `callers.<name>.password_hash`."""
    from derms_bridge.credentials import hash_password

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    out.print(hash_password(password), highlight=False)


@app.command("hash-token")
def hash_token_command() -> None:
    """Print the SHA-256 of a bearer token, for `callers.<name>.token_sha256`."""
    from derms_bridge.credentials import hash_token

    token = typer.prompt("token", hide_input=True, confirmation_prompt=True)
    out.print(hash_token(token), highlight=False)


def main() -> None:
    app()


# --- operating the hub: instances, resubmit, lookups ------------------------------------

EXIT_FAILED = 1
EXIT_USAGE = 2

_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _since(value: str | None) -> datetime | None:
    """An ISO date-time (UTC when it has no offset) or an age: 30m, 2h, 7d."""
    if value is None:
        return None
    age = _AGE.match(value.strip())
    if age:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[age[2]]: int(age[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO date-time nor an age like 30m, 2h, 7d",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _flow_keys(flow: str | None) -> tuple[str, ...]:
    from derms_bridge.catalog import flows_named

    if flow is None:
        return ()
    found = flows_named(flow)
    if not found:
        raise typer.BadParameter(f"no flow is called {flow!r}", param_hint="--flow")
    return tuple(f.key for f in found)


def _with_operations(config: Path, work: Callable[[Operations], Awaitable[T]]) -> T:
    """Run `work` with the operations on the configured database."""
    from derms_bridge.engine.operations import Operations

    settings = _settings_or_exit(config)

    async def run() -> T:
        operations = Operations.of_database(settings.database.url.get_secret_value())
        try:
            return await work(operations)
        finally:
            await operations.aclose()

    return _database_or_exit(run)


def _database_or_exit(run: Callable[[], Awaitable[T]]) -> T:
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(run())  # type: ignore[arg-type]
    except SQLAlchemyError as exc:
        err.print(
            f"[red]error[/] the database cannot be used: {type(exc).__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE) from None


StatusOption = Annotated[
    str | None,
    typer.Option(help="in_progress, succeeded, failed, skipped, resolved or rejected"),
]
FlowOption = Annotated[str | None, typer.Option(help="a flow key or identifier")]
SinceOption = Annotated[
    str | None, typer.Option(help="received at or after: an ISO date-time, or an age (2h, 7d)")
]


def _filter(
    flow: str | None, status: str | None, since: str | None, key: str | None, limit: int
) -> Any:
    from derms_bridge.schemas.ops import INSTANCE_STATUSES, InstanceFilter

    if status is not None and status not in INSTANCE_STATUSES:
        raise typer.BadParameter(f"{status!r} is not a status", param_hint="--status")
    return InstanceFilter(
        flows=_flow_keys(flow),
        status=status,
        business_key=key,
        received_from=_since(since),
        limit=limit,
    )


instances_app = typer.Typer(help="Find and read instances (one per message received).")
app.add_typer(instances_app, name="instances")


@instances_app.command("list")
def instances_list(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    key: Annotated[
        str | None, typer.Option(help="any business identifier: messageId, enrollmentId, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts")] = False,
) -> None:
    """The instances that match, newest first."""
    from rich.table import Table

    where = _filter(flow, status, since, key, limit)
    page = _with_operations(config, lambda operations: operations.search(where))
    if as_json:
        out.print_json(page.model_dump_json())
        return
    table = Table(title=f"{len(page.items)} of {page.total} instances", title_justify="left")
    for column in ("received (UTC)", "id", "flow", "status", "tries", "identifiers", "error"):
        table.add_column(column, overflow="fold")
    colours = {
        "succeeded": "green",
        "resolved": "green",
        "failed": "red",
        "rejected": "red",
        "in_progress": "yellow",
    }
    for item in page.items:
        table.add_row(
            item.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            item.id,
            item.flow,
            f"[{colours.get(item.status, 'white')}]{item.status}[/]",
            str(item.attempts),
            ", ".join(f"{k.kind}={k.value}" for k in item.business_keys[:4]),
            (item.error or "")[:120],
        )
    out.print(table)


@instances_app.command("show")
def instances_show(
    instance_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts")] = False,
) -> None:
    """One instance: its activities in order, its error, and a file's progress."""
    detail = _with_operations(config, lambda operations: operations.detail(instance_id))
    if detail is None:
        err.print(f"[red]error[/] instance {instance_id} does not exist", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    if as_json:
        out.print_json(detail.model_dump_json())
        return
    _print_detail(detail)


def _print_detail(detail: Any) -> None:
    from rich.table import Table

    out.print(f"[bold]{detail.id}[/]  {detail.flow} ({detail.flow_identifier})", highlight=False)
    facts = [
        ("status", detail.status),
        ("attempts", str(detail.attempts)),
        ("caller", detail.caller or "-"),
        ("received", detail.received_at.isoformat()),
        ("finished", detail.finished_at.isoformat() if detail.finished_at else "-"),
        ("identifiers", ", ".join(f"{k.kind}={k.value}" for k in detail.business_keys) or "-"),
        ("resubmit of", detail.resubmit_of or "-"),
        ("resubmitted as", ", ".join(detail.resubmitted_as) or "-"),
        ("parent", detail.parent_id or "-"),
        ("children", ", ".join(detail.children) or "-"),
    ]
    for label, value in facts:
        out.print(f"  {label:<15}{value}", highlight=False)
    if detail.error:
        out.print(f"  [red]{'error':<15}{detail.error}[/]", highlight=False)
    if detail.skipped_reason:
        out.print(f"  {'skipped':<15}{detail.skipped_reason}", highlight=False)
    if detail.file is not None:
        file = detail.file
        segments = ", ".join(f"{n} {state}" for state, n in file.segments.items())
        out.print(
            f"  {'file':<15}{file.state}, run {file.run}, {file.rows_sent} of "
            f"{file.total_rows} rows sent; segments: {segments}",
            highlight=False,
        )
        for problem in [*file.segment_errors, *([file.ack_error] if file.ack_error else [])]:
            out.print(f"  [red]{'':<15}{problem}[/]", highlight=False)
    table = Table(title="activities", title_justify="left")
    for column in ("#", "at (UTC)", "target", "operation", "call", "status", "ms", "error"):
        table.add_column(column, overflow="fold")
    for n, activity in enumerate(detail.activities, start=1):
        table.add_row(
            str(n),
            activity.at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3],
            activity.target,
            activity.operation,
            " ".join(p for p in (activity.method, activity.path) if p),
            str(activity.http_status or "-"),
            f"{activity.duration_ms:.0f}",
            activity.error or "",
        )
    out.print(table)


@app.command()
def resubmit(
    instance_ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...")] = None,
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    flow: FlowOption = None,
    status: StatusOption = None,
    since: SinceOption = None,
    key: Annotated[str | None, typer.Option(help="a business identifier")] = None,
) -> None:
    """Run instances again from their stored payloads: those named, or the failed ones a
    filter selects (e.g. --flow enrollment_request --since 2h) that were not resubmitted
    yet, as the console's bulk resubmit: run twice, it never sends again what its first
    run resubmitted with success (those are resolved). Exit 0 when every one succeeded, 1
    when any failed or was refused, 2 for a mistake in the command or an unknown
    instance."""
    from rich.progress import Progress
    from rich.table import Table

    from derms_bridge.bootstrap import build_hub
    from derms_bridge.engine.runner import InstanceNotFound, NotResubmittable

    filtering = any(v is not None for v in (flow, status, since, key))
    if bool(instance_ids) == filtering:
        err.print(
            "[red]error[/] name instance ids, or select them with --flow/--status/--since/--key "
            "(one or the other)",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE)
    if status not in (None, "failed"):
        err.print(
            "[red]error[/] resubmit selects failed instances not resubmitted yet; name the ids "
            "of others to resubmit them",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE)
    where = _filter(flow, "failed", since, key, 500) if filtering else None
    settings = _settings_or_exit(config)
    lookups = _lookups_or_exit(settings.lookups_dir)
    _log_as_json_lines(settings, "warning")
    results: list[tuple[str, str, str, str]] = []

    async def run() -> None:
        hub = build_hub(settings, lookups)
        try:
            chosen = list(instance_ids or [])
            if where is not None:
                chosen, _total = await hub.operations.failures_to_resubmit(where, None)
            missing = [i for i in chosen if not await hub.operations.exists(i)]
            if missing:
                for instance_id in missing:
                    err.print(f"[red]error[/] instance {instance_id} does not exist")
                raise typer.Exit(EXIT_USAGE)
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("resubmitting", total=len(chosen))
                for instance_id in chosen:
                    try:
                        outcome = await hub.engine.resubmit(instance_id, caller="cli")
                        results.append(
                            (instance_id, outcome.instance_id, outcome.status, outcome.error or "")
                        )
                    except (InstanceNotFound, NotResubmittable) as exc:
                        results.append((instance_id, "-", "refused", str(exc)))
                    progress.advance(task)
        finally:
            await hub.aclose()

    _database_or_exit(run)
    if not results:
        out.print("nothing to resubmit: no instance matches")
        return
    table = Table(title="resubmitted", title_justify="left")
    for column in ("instance", "new run", "status", "error"):
        table.add_column(column, overflow="fold")
    for old, new, outcome_status, error in results:
        table.add_row(old, new, outcome_status, error[:160])
    out.print(table)
    failed = [r for r in results if r[2] in ("failed", "refused")]
    out.print(
        f"{len(results) - len(failed)} of {len(results)} resubmitted without failing",
        highlight=False,
    )
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _lookups_or_exit(directory: Path) -> Any:
    try:
        return load_lookups(directory)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None


lookups_app = typer.Typer(help="Carry lookups to and from CSV files.")
app.add_typer(lookups_app, name="lookups")


@lookups_app.command("export")
def lookups_export(
    target: Annotated[Path, typer.Argument(metavar="DIR|FILE")],
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    name: Annotated[
        list[str] | None, typer.Option("--name", "-n", help="a lookup (e.g. EventType); repeat")
    ] = None,
) -> None:
    """Write the lookups in force as CSV: every one into a directory, or one into a .csv file."""
    from derms_bridge.lookup_tables import export_lookups

    directory = _settings_or_exit(config).lookups_dir
    try:
        written = export_lookups(directory, list(name or []), target)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for path in written:
        out.print(f"wrote {path}", highlight=False)


@lookups_app.command("import")
def lookups_import(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...")],
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
) -> None:
    """Replace lookups by CSV files, in the hub's layout or a cloud service export (a DVM row
    first). Nothing is written unless every file, and the lookups with them, are valid. A
    running hub takes them within seconds; each change is in the console's audit, by
    cli:<your user name>."""
    import getpass

    from derms_bridge.lookup_tables import import_lookups

    settings = _settings_or_exit(config)
    try:
        imported = import_lookups(files, settings.lookups_dir, settings.connections.derms.keys())
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for path in imported.written:
        name = path.stem.removeprefix("OUTL-BRT-DACS_DRMS_")
        rows = len(imported.lookups.tables[name].rows)
        out.print(f"wrote {path} ({rows} rows)", highlight=False)

    async def audit(operations: Operations) -> None:
        for name, changes in imported.changes.items():
            if changes:
                await operations.record_lookup_edit(name, f"cli:{getpass.getuser()}", changes)

    _with_operations(config, audit)
