"""What every command group shares: the options, the exit codes, the consoles, and loading
the settings, the lookups and the database or saying why not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from derms_bridge.lookups import LookupFileError, Lookups, load_lookups
from derms_bridge.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from derms_bridge.engine.operations import Operations

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="the settings file", envvar="DERMS_BRIDGE_CONFIG"),
]

#: The work was done and failed: a run, or a resubmitted instance.
EXIT_FAILED = 1
#: Nothing was done: a mistake in the command, unusable settings or lookups, an unknown flow
#: or instance, a database that cannot be used.
EXIT_REFUSED = 2

T = TypeVar("T")


def print_problems(problems: Iterable[str]) -> None:
    for problem in problems:
        err.print(f"[red]error[/] {problem}", highlight=False)


def settings_or_exit(path: Path) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        print_problems(exc.problems)
        raise typer.Exit(EXIT_REFUSED) from None


def lookups_or_exit(directory: Path) -> Lookups:
    try:
        return load_lookups(directory)
    except LookupFileError as exc:
        print_problems(exc.problems)
        raise typer.Exit(EXIT_REFUSED) from None


def log_as_json_lines(settings: Settings, log_level: str) -> None:
    from derms_bridge.bootstrap import secrets_in
    from derms_bridge.engine.redaction import Redactor
    from derms_bridge.logs import configure_logging

    configure_logging(log_level.upper(), Redactor(secrets_in(settings)))


def with_operations(config: Path, work: Callable[[Operations], Awaitable[T]]) -> T:
    """Run `work` with the operations on the configured database."""
    from derms_bridge.engine.operations import Operations

    settings = settings_or_exit(config)

    async def run() -> T:
        operations = Operations.of_database(settings.database.url.get_secret_value())
        try:
            return await work(operations)
        finally:
            await operations.aclose()

    return database_or_exit(run)


def database_or_exit(run: Callable[[], Awaitable[T]]) -> T:
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
        raise typer.Exit(EXIT_REFUSED) from None
