"""derms-bridge: one command for running, checking and operating the hub."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated

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


def _serve(settings: Settings, host: str, port: int, log_level: str) -> None:
    from derms_bridge.api.app import create_app
    from derms_bridge.bootstrap import build_hub
    from derms_bridge.logs import configure_logging
    from derms_bridge.store.database import migrate as run_migrations

    configure_logging(log_level.upper())
    try:
        lookups = load_lookups(settings.lookups_dir)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if settings.database.migrate_on_start:
        run_migrations(settings.database.url.get_secret_value())
    hub = build_hub(settings, lookups)
    uvicorn.run(create_app(hub), host=host, port=port, log_config=None, log_level=log_level.lower())


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
    """Send the file flows' segments, without serving the API (run as many as you like,
    on as many machines, against one PostgreSQL)."""
    import asyncio
    import signal

    from derms_bridge.bootstrap import build_hub
    from derms_bridge.logs import configure_logging

    settings = _settings_or_exit(config)
    configure_logging(log_level.upper())
    try:
        lookups = load_lookups(settings.lookups_dir)
    except LookupFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/] {problem}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None

    async def work() -> None:
        hub = build_hub(settings, lookups)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await hub.workers.worker.run(stop)
        finally:
            await hub.aclose()

    asyncio.run(work())


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
        typer.Option(help="lookups directory; default: ./config/lookups, else the shipped rows"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "warning",
) -> None:
    """Run the hub with simulated CPMCS and DERMS, an SMTP sink, an FTP server and an
    object store, all on loopback."""
    from derms_bridge.sandbox.run import (
        SandboxPorts,
        banner,
        prepare_sandbox_files,
        sandbox_settings,
        start_simulators,
    )

    ports = SandboxPorts(
        hub=port,
        cpmcs=cpmcs_port,
        derms=derms_port,
        smtp=smtp_port,
        ftp=ftp_port,
        object_store=object_store_port,
    )
    lookups_dir = lookups or sandbox_lookups_dir()
    files = prepare_sandbox_files(Path("var"), load_lookups(lookups_dir))
    settings = sandbox_settings(ports, database, lookups_dir, files)
    simulators = start_simulators(ports, files, out)
    out.print(banner(ports, database, files), highlight=False, markup=False, soft_wrap=True)
    sys.stdout.flush()
    try:
        _serve(settings, settings.server.host, ports.hub, log_level)
    finally:
        simulators.stop()


@app.command("hash-password")
def hash_password_command() -> None:
    """Print the argon2 hash of a caller's password, for `callers.<name>.password_hash`."""
    from derms_bridge.api.security import hash_password

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    out.print(hash_password(password), highlight=False)


@app.command("hash-token")
def hash_token_command() -> None:
    """Print the SHA-256 of a bearer token, for `callers.<name>.token_sha256`."""
    token = typer.prompt("token", hide_input=True, confirmation_prompt=True)
    out.print(hashlib.sha256(token.encode()).hexdigest(), highlight=False)


def main() -> None:
    app()
