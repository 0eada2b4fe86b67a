"""Lookups to and from CSV files an operator carries: exported from the hub, or from the
cloud service.

Two layouts are read: the hub's own (a header row naming the columns, then one row
per entry) and an export from Oracle Integration Cloud, which puts a ``DVM,<name>``
row (and sometimes a ``Description,...`` row) before the header. Files are written in
the hub's own layout. An import is checked whole, against every other lookup in force,
before any file is replaced; each file is replaced at once, never half-written.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from derms_bridge.lookups import PREFIX, LookupFileError, Lookups, load_lookups


@dataclass(frozen=True)
class LookupTable:
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @property
    def file_name(self) -> str:
        return f"{PREFIX}{self.name}.csv"


def read_lookup_file(path: Path) -> LookupTable:
    """One lookup as a file holds it, in either layout; LookupFileError names each bad
    row and column."""
    problems: list[str] = []
    name = path.stem.removeprefix(PREFIX)
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    after_dvm = False
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
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
    return LookupTable(name=name, columns=columns, rows=tuple(rows))


def _write_atomically(table: LookupTable, path: Path) -> None:
    """Readers see the old file or the new one, never a part."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows(table.rows)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
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
        _write_atomically(tables[0], target)
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        _write_atomically(table, target / table.file_name)
        written.append(target / table.file_name)
    return written


def import_lookups(files: list[Path], directory: Path) -> tuple[Lookups, list[Path]]:
    """Replace lookups in `directory` by those in `files`, once all of them, together with
    the lookups left as they are, pass every check the hub makes when it starts."""
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
    if problems:
        raise LookupFileError(problems)
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging)
        if directory.is_dir():
            for existing in directory.glob(f"{PREFIX}*.csv"):
                shutil.copy2(existing, staged / existing.name)
        for table in tables.values():
            _write_atomically(table, staged / table.file_name)
        try:
            lookups = load_lookups(staged)
        except LookupFileError as exc:
            # Name the operator's files, not the staging copies.
            raise LookupFileError(
                [p.replace(str(staged), str(directory)) for p in exc.problems]
            ) from None
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables.values():
        _write_atomically(table, directory / table.file_name)
        written.append(directory / table.file_name)
    return lookups, written
