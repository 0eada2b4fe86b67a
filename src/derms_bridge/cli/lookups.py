"""The commands that carry lookups to and from CSV files: lookups export|import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from derms_bridge.cli.common import (
    EXIT_REFUSED,
    ConfigOption,
    out,
    print_problems,
    settings_or_exit,
    with_operations,
)
from derms_bridge.lookups import LookupFileError
from derms_bridge.settings import DEFAULT_SETTINGS_FILE

if TYPE_CHECKING:
    from derms_bridge.engine.operations import Operations

lookups_app = typer.Typer(help="Carry lookups to and from CSV files.")


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

    directory = settings_or_exit(config).lookups_dir
    try:
        written = export_lookups(directory, list(name or []), target)
    except LookupFileError as exc:
        print_problems(exc.problems)
        raise typer.Exit(EXIT_REFUSED) from None
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

    settings = settings_or_exit(config)
    try:
        imported = import_lookups(files, settings.lookups_dir, settings.connections.derms.keys())
    except LookupFileError as exc:
        print_problems(exc.problems)
        raise typer.Exit(EXIT_REFUSED) from None
    for path in imported.written:
        name = path.stem.removeprefix("OUTL-BRT-DACS_DRMS_")
        rows = len(imported.lookups.tables[name].rows)
        out.print(f"wrote {path} ({rows} rows)", highlight=False)

    async def audit(operations: Operations) -> None:
        for name, changes in imported.changes.items():
            if changes:
                await operations.record_lookup_edit(name, f"cli:{getpass.getuser()}", changes)

    with_operations(config, audit)
