"""The lookups as files: read in either layout, checked, edited, imported and exported.

Two layouts are read: the hub's own (a header row naming the columns, then one row
per entry) and an export from Oracle Integration Cloud, which puts a ``DVM,<name>``
row (and sometimes a ``Description,...`` row) before the header. Files are written in
the hub's own layout, whole, through a temporary file and a rename: a reader, or a
crash, sees the old file or the new one, never half of one. An import or a console
edit is checked against every other lookup in force before any file is replaced.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from derms_bridge.lookups import (
    DEFAULT_ROUTE,
    EMAIL_TYPE,
    PREFIX,
    REQUIRED_PROPERTIES,
    LookupFileError,
    Lookups,
    email_type_problem,
    load_lookups,
)

Row = tuple[str, ...]

FLAG_VALUES = ("true", "false")


@dataclass(frozen=True)
class LookupTable:
    name: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    #: Changes with the file's bytes, so that an edit of a file changed since it was read
    #: is refused; empty for a table not read from a file.
    version: str = ""

    @property
    def file_name(self) -> str:
        return f"{PREFIX}{self.name}.csv"


@dataclass(frozen=True)
class RowChange:
    """A row added (no `before`), removed (no `after`) or changed; cells after the key."""

    key: str
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None


@dataclass(frozen=True)
class Imported:
    lookups: Lookups
    written: list[Path]
    #: Per lookup name, the rows the import changed.
    changes: dict[str, list[RowChange]]


class StaleEdit(Exception):
    """The file changed since the operator opened it."""


def path_of(directory: Path, name: str) -> Path:
    return directory / f"{PREFIX}{name}.csv"


def read_lookup_file(path: Path) -> LookupTable:
    """One lookup as a file holds it, in either layout; LookupFileError names each bad
    row and column."""
    problems: list[str] = []
    name = path.stem.removeprefix(PREFIX)
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    after_dvm = False
    version = ""
    try:
        raw = path.read_bytes()
        version = hashlib.sha256(raw).hexdigest()
        with io.StringIO(raw.decode("utf-8-sig"), newline="") as handle:
            reader = csv.reader(handle)
            for record in reader:
                line = reader.line_num
                cells = tuple(cell.strip() for cell in record)
                if not any(cells):
                    continue
                if not columns and cells[0].upper() == "DVM":
                    if len(cells) > 1 and cells[1]:
                        name = cells[1].removeprefix(PREFIX)
                    after_dvm = True
                    continue
                if not columns and after_dvm and cells[0].lower() == "description":
                    continue
                if not columns:
                    columns = cells
                    if len(columns) < 2 or not all(columns):
                        problems.append(
                            f"{path}:{line}: the header needs two named columns or more"
                        )
                        break
                    continue
                if len(cells) < 2:
                    problems.append(f"{path}:{line}: column {columns[1]!r} is missing")
                    continue
                if len(cells) > len(columns):
                    problems.append(
                        f"{path}:{line}: {len(cells)} cells, but the header names "
                        f"{len(columns)} columns"
                    )
                    continue
                if not cells[0]:
                    problems.append(f"{path}:{line}: column {columns[0]!r} is empty")
                    continue
                if cells[0] in seen:
                    problems.append(
                        f"{path}:{line}: column {columns[0]!r}: {cells[0]!r} is already on "
                        f"line {seen[cells[0]]}"
                    )
                    continue
                seen[cells[0]] = line
                rows.append(cells + ("",) * (len(columns) - len(cells)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path}: cannot be read: {exc}")
    if not columns and not problems:
        problems.append(f"{path}: no header row")
    if problems:
        raise LookupFileError(problems)
    return LookupTable(name=name, columns=columns, rows=tuple(rows), version=version)


def write_lookup_file(table: LookupTable, path: Path) -> None:
    """The table over the file, in the hub's layout, all at once."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows(table.rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def problems_in(
    name: str, columns: Sequence[str], rows: Sequence[Row], derms_connections: Collection[str]
) -> list[str]:
    """What keeps these rows from being put in force, one sentence each, naming the row."""
    problems: list[str] = []
    key_column = columns[0]
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        key = row[0]
        if not key:
            problems.append(f"row {number}: {key_column} is empty")
            continue
        if key in seen:
            problems.append(f"row {number}: {key_column} {key!r} is already on row {seen[key]}")
            continue
        seen[key] = number
        if name == "ConfigProps" and key.endswith(".flag") and row[1] not in FLAG_VALUES:
            problems.append(f"row {number}: {key} is a flag; its value must be true or false")
        email_type = (
            email_type_problem(row[1]) if name == "ConfigProps" and key == EMAIL_TYPE else None
        )
        if email_type is not None:
            problems.append(f"row {number}: {email_type}")
        if name == "Routing" and row[1] not in derms_connections:
            known = ", ".join(sorted(derms_connections))
            problems.append(
                f"row {number}: division {key!r} goes to {row[1]!r}, "
                f"which is not a DERMS connection (there are: {known})"
            )
        if name == "Email_ID" and any(
            "@" not in address for address in row[1].replace(";", ",").split(",") if address.strip()
        ):
            problems.append(f"row {number}: {key} must hold email addresses")
    if name == "ConfigProps":
        problems.extend(
            f"property {prop} is required" for prop in REQUIRED_PROPERTIES if prop not in seen
        )
    if name == "Routing" and DEFAULT_ROUTE not in seen:
        problems.append(f"a {DEFAULT_ROUTE!r} row is required, for every other division")
    return problems


def changes_between(before: Sequence[Row], after: Sequence[Row]) -> list[RowChange]:
    old = {row[0]: row[1:] for row in before}
    new = {row[0]: row[1:] for row in after}
    changes = [
        RowChange(key=key, before=old.get(key), after=cells)
        for key, cells in new.items()
        if old.get(key) != cells
    ]
    changes.extend(
        RowChange(key=key, before=cells, after=None) for key, cells in old.items() if key not in new
    )
    return changes


def save_lookup(directory: Path, name: str, version: str, rows: Sequence[Row]) -> Lookups:
    """Write the rows over the lookup's file and read every lookup again; the caller checked
    the rows with `problems_in`. Raises StaleEdit when the file is not at `version`."""
    path = path_of(directory, name)
    current = read_lookup_file(path)
    if current.version != version:
        raise StaleEdit(f"{PREFIX}{name} was changed since this page was opened")
    write_lookup_file(LookupTable(name, current.columns, tuple(rows)), path)
    try:
        return load_lookups(directory)
    except LookupFileError:
        write_lookup_file(current, path)
        raise


def export_lookups(directory: Path, names: list[str], target: Path) -> list[Path]:
    """Write the lookups in force (all, or those named) to `target`: a directory, or one
    .csv file when a single lookup is asked for."""
    lookups = load_lookups(directory)
    unknown = [n for n in names if n.removeprefix(PREFIX) not in lookups.tables]
    if unknown:
        raise LookupFileError([f"no lookup is called {n!r}" for n in unknown])
    chosen = [n.removeprefix(PREFIX) for n in names] or sorted(lookups.tables)
    tables = [read_lookup_file(directory / f"{PREFIX}{name}.csv") for name in chosen]
    if target.suffix.lower() == ".csv":
        if len(tables) != 1:
            raise LookupFileError([f"{target}: one file holds one lookup; name it with --name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        write_lookup_file(tables[0], target)
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        write_lookup_file(table, target / table.file_name)
        written.append(target / table.file_name)
    return written


def import_lookups(
    files: list[Path], directory: Path, derms_connections: Collection[str]
) -> Imported:
    """Replace lookups in `directory` by those in `files`, once all of them, together with
    the lookups left as they are, pass every check the hub and its console make."""
    problems: list[str] = []
    tables: dict[str, LookupTable] = {}
    for path in files:
        try:
            table = read_lookup_file(path)
        except LookupFileError as exc:
            problems.extend(exc.problems)
            continue
        if table.name in tables:
            problems.append(f"{path}: lookup {table.name} is in two of the files given")
        tables[table.name] = table
        problems.extend(
            f"{path}: {problem}"
            for problem in problems_in(table.name, table.columns, table.rows, derms_connections)
        )
    if problems:
        raise LookupFileError(problems)
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging)
        if directory.is_dir():
            for existing in directory.glob(f"{PREFIX}*.csv"):
                shutil.copy2(existing, staged / existing.name)
        for table in tables.values():
            write_lookup_file(table, staged / table.file_name)
        try:
            lookups = load_lookups(staged)
        except LookupFileError as exc:
            # Name the operator's files, not the staging copies.
            raise LookupFileError(
                [p.replace(str(staged), str(directory)) for p in exc.problems]
            ) from None
    directory.mkdir(parents=True, exist_ok=True)
    written, changes = [], {}
    for table in tables.values():
        target = directory / table.file_name
        before = read_lookup_file(target).rows if target.is_file() else ()
        changes[table.name] = changes_between(before, table.rows)
        write_lookup_file(table, target)
        written.append(target)
    return Imported(lookups=lookups, written=written, changes=changes)
