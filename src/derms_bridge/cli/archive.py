"""derms-bridge archive show: what the purge archived (settings `retention.archive`), read
back from the archive's store as JSON Lines."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from typing import Annotated, NoReturn

import typer

from derms_bridge.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    ConfigOption,
    err,
    settings_or_exit,
)
from derms_bridge.settings import DEFAULT_SETTINGS_FILE

archive_app = typer.Typer(help="Read back what the purge archived before removing it.")


@archive_app.command("show")
def show(
    day: Annotated[
        str | None, typer.Option("--day", help="the day the instances were received, YYYY-MM-DD")
    ] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="the flow's key")] = None,
    object_name: Annotated[
        str | None, typer.Option("--object", help="one archive object, by its name")
    ] = None,
    config: ConfigOption = DEFAULT_SETTINGS_FILE,
) -> None:
    """Print the archived instances of a day and flow (every object of theirs) or of one
    object, one JSON object a line, to stdout.

    Exit code 0 when some were found, 1 when none were or the store failed, 2 for a
    mistake in the command or settings without an archive.
    """
    from derms_bridge.bootstrap import open_archive
    from derms_bridge.catalog import BY_KEY
    from derms_bridge.errors import BadFileName, FileStorageError

    if (object_name is None) == (day is None and flow is None):
        refuse("give --day and --flow, or --object")
    names: list[str] = []
    day_and_flow: tuple[date, str] | None = None
    if object_name is not None:
        names.append(object_name)
    else:
        if day is None or flow is None:
            refuse("give both --day and --flow")
        try:
            received = date.fromisoformat(day)
        except ValueError:
            refuse(f"--day {day!r} is not a date like 2026-12-04")
        if flow not in BY_KEY:
            refuse(f"--flow {flow!r} is not a flow's key (e.g. enrollment_request)")
        day_and_flow = (received, flow)
    settings = settings_or_exit(config)
    archive = open_archive(settings.retention.archive)
    if archive is None:
        refuse("the settings configure no archive (retention.archive)")

    async def print_lines() -> int:
        if day_and_flow is not None:
            names.extend(await archive.names(*day_and_flow))
        printed = 0
        for name in names:
            async for line in archive.lines(name):
                sys.stdout.buffer.write(line)
                printed += 1
        sys.stdout.buffer.flush()
        return printed

    try:
        printed = asyncio.run(print_lines())
    except (FileStorageError, BadFileName) as exc:
        err.print(f"[red]error[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if not printed:
        where = object_name or f"flow {flow} on {day}"
        err.print(f"nothing archived for {where} in {archive.storage.description}")
        raise typer.Exit(EXIT_FAILED)


def refuse(problem: str) -> NoReturn:
    err.print(f"[red]error[/] {problem}", highlight=False)
    raise typer.Exit(EXIT_REFUSED)
