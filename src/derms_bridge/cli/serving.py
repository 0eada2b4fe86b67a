"""The commands that run the hub: serve, worker, sandbox, run, migrate."""

from __future__ import annotations

import gc
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from derms_bridge.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    ConfigOption,
    err,
    log_as_json_lines,
    lookups_or_exit,
    out,
    settings_or_exit,
)
from derms_bridge.lookups import load_lookups, sandbox_lookups_dir
from derms_bridge.settings import DEFAULT_SETTINGS_FILE, Settings


def migrate(config: ConfigOption = DEFAULT_SETTINGS_FILE) -> None:
    """Bring the database schema to the newest version."""
    from derms_bridge.store.database import migrate as run_migrations

    settings = settings_or_exit(config)
    run_migrations(settings.database.url.get_secret_value())
    out.print("[green]ok[/] database schema is current")


#: Net new objects between two of the collector's young collections in a hub process
#: (Python's default is 700). Under load the default collected every few flows, found
#: nearly all it looked at still alive (the flows in flight) and passed it on to the older
#: generations, each collected in turn: the collector took 5.5% of the mix's CPU, 3,000
#: saves 3.1% (bench/README.md, "The mix's CPU per flow"). A young collection then pauses
#: the event loop about 1 ms (0.15 ms at 700, 4-5 ms at 10,000).
YOUNG_OBJECTS_PER_COLLECTION = 3000


def _share_metrics(settings: Settings) -> None:
    """The hub processes of this machine keep their counts in one directory, which
    prometheus-client must be told before it is first imported."""
    directory = settings.metrics.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from derms_bridge.metrics import forget_dead_processes

    forget_dead_processes(directory)


def _serve(
    settings: Settings,
    host: str,
    port: int,
    log_level: str,
    sockets: list[socket.socket] | None = None,
) -> None:
    """One hub process; on `sockets` when its parent listens for it (`serve --processes`)."""
    if sockets is None:
        _share_metrics(settings)
    from derms_bridge.api.app import create_app
    from derms_bridge.api.http_server import BoundedHeadProtocol, run_server
    from derms_bridge.bootstrap import build_hub
    from derms_bridge.store.database import migrate as run_migrations

    log_as_json_lines(settings, log_level)
    lookups = lookups_or_exit(settings.lookups_dir)
    if settings.database.migrate_on_start and sockets is None:
        run_migrations(settings.database.url.get_secret_value())
    hub = build_hub(settings, lookups)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, middle, old)
    config = uvicorn.Config(
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
    run_server(config, hub.shutdown, sockets)


def _serve_on(config: Path, host: str, port: int, log_level: str, listening: socket.socket) -> None:
    """A child of `serve --processes`: the settings read again, the parent's socket served."""
    _serve(settings_or_exit(config), host, port, log_level, [listening])


def _serve_processes(
    config: Path, settings: Settings, host: str, port: int, log_level: str, processes: int
) -> None:
    """`processes` hub processes serving one port, each on a socket of its own that this
    process opens (SO_REUSEPORT) and holds.

    The kernel spreads the connections over the sockets evenly (by their addresses and
    ports): on one shared socket the first child to accept took most of a burst's
    connections, three in four of them with two children. A child that ends on its own (it
    crashed, or could not start) stops the others and this process exits 1, for the service
    manager to restart them together.
    """
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    from derms_bridge.api.http_server import STARTUP_FAILURE
    from derms_bridge.store.database import migrate as run_migrations

    _share_metrics(settings)
    if settings.database.migrate_on_start:
        run_migrations(settings.database.url.get_secret_value())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening: list[socket.socket] = []
    try:
        for _ in range(processes):
            listening.append(
                socket.create_server((host, port), family=family, backlog=2048, reuse_port=True)
            )
    except OSError as exc:
        for opened in listening:
            opened.close()
        err.print(f"[red]error[/] cannot listen on {host}:{port}: {exc}", highlight=False)
        raise typer.Exit(STARTUP_FAILURE) from None
    spawn = multiprocessing.get_context("spawn")
    children = [
        spawn.Process(
            target=_serve_on,
            args=(config, host, port, log_level, own),
            name=f"derms-bridge serve {number}",
        )
        for number, own in enumerate(listening, start=1)
    ]
    stopping = False

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.exitcode is None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    out.print(
        f"serving on http://{host}:{port} with {processes} hub processes "
        f"(pids {', '.join(str(child.pid) for child in children)})",
        highlight=False,
    )
    crashed = False
    while any(child.exitcode is None for child in children):
        wait([child.sentinel for child in children if child.exitcode is None], 0.5)
        if not stopping and any(child.exitcode is not None for child in children):
            crashed = True
            for child in children:
                if child.exitcode is not None:
                    err.print(
                        f"[red]error[/] hub process {child.pid} ended with exit code "
                        f"{child.exitcode}: stopping the others",
                        highlight=False,
                    )
            stop(signal.SIGTERM, None)
    for opened in listening:
        opened.close()
    if crashed or any(child.exitcode != 0 for child in children):
        raise typer.Exit(EXIT_FAILED)


def serve(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    host: Annotated[str | None, typer.Option(help="overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides server.port")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="hub processes accepting on the one port, each a whole hub; needs "
            "PostgreSQL (docs/deploy.md)",
        ),
    ] = 1,
) -> None:
    """Run the hub: the trigger routes, the operations API and the flows."""
    settings = settings_or_exit(config)
    if not settings.callers:
        err.print(
            "[red]error[/] no callers are configured, so nobody could call the hub; "
            "add them under `callers:` (see docs/configuration.md)",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    host, port = host or settings.server.host, port or settings.server.port
    if processes == 1:
        _serve(settings, host, port, log_level)
        return
    if settings.database.url.get_secret_value().startswith("sqlite"):
        err.print(
            "[red]error[/] --processes needs PostgreSQL: SQLite lets one writer in at a "
            "time, so the processes would only wait for one another (docs/deploy.md)",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    _serve_processes(config, settings, host, port, log_level, processes)


def worker(
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Send the file flows' segments and transfers, and run the schedules, without serving
    the API (run as many as you like, on as many machines, against one PostgreSQL)."""
    import asyncio

    settings = settings_or_exit(config)
    _share_metrics(settings)
    from derms_bridge.bootstrap import build_hub, freeze_startup_objects

    log_as_json_lines(settings, log_level)
    lookups = lookups_or_exit(settings.lookups_dir)

    async def work() -> None:
        hub = build_hub(settings, lookups, command="worker")
        freeze_startup_objects()
        await hub.run_until_signalled()

    asyncio.run(work())


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

    settings = settings_or_exit(config)
    try:
        key = Scheduler.flow_named(flow).info.key
    except UnknownScheduledFlow as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_REFUSED) from None
    lookups = lookups_or_exit(settings.lookups_dir)
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
        raise typer.Exit(EXIT_FAILED) from None
    colour = "red" if result.status == "failed" else "green"
    out.print(
        f"[{colour}]{result.status}[/] {result.error or result.skipped_reason or ''}",
        highlight=False,
    )
    if result.reply is not None:
        out.print_json(data=result.reply.model_dump(mode="json"))
    out.print(f"details: GET /ops/instances/{instance_id}", highlight=False)
    if result.status == "failed":
        raise typer.Exit(EXIT_FAILED)


def sandbox(
    port: Annotated[int, typer.Option(help="the hub's port")] = 8080,
    cpmcs_port: Annotated[int | None, typer.Option(help="default: the hub's port + 1")] = None,
    derms_port: Annotated[int | None, typer.Option(help="default: the hub's port + 2")] = None,
    smtp_port: Annotated[int | None, typer.Option(help="default: the hub's port + 3")] = None,
    ftp_port: Annotated[int | None, typer.Option(help="default: the hub's port + 4")] = None,
    object_store_port: Annotated[
        int | None, typer.Option(help="default: the hub's port + 5")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            help="database URL; default: sqlite:///var/sandbox.db, or with --demo "
            "sqlite:///var/demo.db made afresh"
        ),
    ] = None,
    lookups: Annotated[
        Path | None,
        typer.Option(help="lookups directory; default: var/sandbox-lookups, a copy of the shipped"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "warning",
    derms_max_retries: Annotated[
        int,
        typer.Option(
            min=0, max=100, help="how often the DERMS simulator resends a file after FAILURE"
        ),
    ] = 3,
    derms_retry_delay: Annotated[
        float,
        typer.Option(min=0, max=86400, help="seconds the DERMS simulator waits before a resend"),
    ] = 30.0,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="play a utility's day through the sandbox, print what arrived where, and stop "
            "(exit 1 when something was lost)",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="the demo's random seed: one seed, one day")] = 1,
    demo_scale: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=1,
            help="how much of the day: 1 is 100,000 devices and a 60 s outage (about 4 "
            "minutes), 0.02 is 2,000 devices and a 3 s outage (about 30 s)",
        ),
    ] = 1.0,
) -> None:
    """Run the hub with simulated CPMCS and DERMS, an SMTP sink, an FTP server and an
    object store, all on loopback; with --demo, play a day of traffic through them."""
    try:
        from derms_bridge.sandbox.derms_sim import RetrySetting
        from derms_bridge.sandbox.run import (
            SandboxPorts,
            banner,
            prepare_sandbox_files,
            sandbox_settings,
            start_demo_day,
            start_simulators,
        )
    except ImportError as missing:
        err.print(
            f"[red]error[/] the sandbox needs {missing.name}: "
            "pip install 'derms-bridge\\[sandbox]'",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED) from None

    if not demo and (seed != 1 or demo_scale != 1.0):
        err.print("[red]error[/] --seed and --demo-scale go with --demo", highlight=False)
        raise typer.Exit(EXIT_REFUSED)
    ports = SandboxPorts(
        hub=port,
        cpmcs=cpmcs_port,
        derms=derms_port,
        smtp=smtp_port,
        ftp=ftp_port,
        object_store=object_store_port,
    )
    if database is None:
        database = "sqlite:///var/demo.db" if demo else "sqlite:///var/sandbox.db"
        if demo:
            # The demo's day is the same each time: it starts on an empty database.
            for leftover in Path("var").glob("demo.db*"):
                leftover.unlink()
    lookups_dir = lookups or sandbox_lookups_dir(Path("var"))
    sandbox_lookups = load_lookups(lookups_dir)
    files = prepare_sandbox_files(Path("var"), sandbox_lookups)
    settings = sandbox_settings(ports, database, lookups_dir, files)
    retries = RetrySetting(max_retries=derms_max_retries, retry_delay_seconds=derms_retry_delay)
    simulators = start_simulators(ports, files, out, retries)
    out.print(
        banner(ports, database, files, lookups_dir), highlight=False, markup=False, soft_wrap=True
    )
    sys.stdout.flush()
    day = (
        start_demo_day(ports, settings, sandbox_lookups, simulators, out, seed, demo_scale)
        if demo
        else None
    )
    try:
        _serve(settings, settings.server.host, ports.hub, log_level)
    finally:
        simulators.stop()
    if day is not None:
        raise typer.Exit(0 if day.nothing_lost else EXIT_FAILED)
