"""Editing a lookup from the console: its rows checked, written atomically, and put in force.

The file stays the source of truth (the same CSV an export from the cloud service gives),
so an edit rewrites it whole through a temporary file and a rename: a reader, or a crash,
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from derms_bridge.lookups import (
    DEFAULT_ROUTE,
    PREFIX,
    REQUIRED_PROPERTIES,
    LookupFileError,
    Lookups,
    load_lookups,
)

Row = tuple[str, ...]

FLAG_VALUES = ("true", "false")


@dataclass(frozen=True)
class LookupFile:
    """Every column of a lookup file as written, and a version that changes with its bytes."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    version: str


@dataclass(frozen=True)
class RowChange:
    """A row added (no `before`), removed (no `after`) or changed; cells after the key."""

    key: str
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None


class StaleEdit(Exception):
    """The file changed since the operator opened it."""


def path_of(directory: Path, name: str) -> Path:
    return directory / f"{PREFIX}{name}.csv"


def read_lookup_file(directory: Path, name: str) -> LookupFile:
    raw = path_of(directory, name).read_bytes()
    columns: tuple[str, ...] = ()
    rows: list[Row] = []
    for record in csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")):
        if not record or all(not cell.strip() for cell in record):
            continue
        if not columns and record[0].strip().upper() == "DVM":
            continue
        if not columns:
            columns = tuple(cell.strip() for cell in record)
            continue
        cells = [cell.strip() for cell in record[: len(columns)]]
        rows.append(tuple(cells + [""] * (len(columns) - len(cells))))
    return LookupFile(
        name=name, columns=columns, rows=tuple(rows), version=hashlib.sha256(raw).hexdigest()
    )


def problems_in(
    name: str, columns: Sequence[str], rows: Sequence[Row], derms_connections: Collection[str]
) -> list[str]:
    """What keeps these rows from being saved, one sentence each, naming the row."""
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


def _write_atomically(path: Path, content: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _as_csv(columns: Sequence[str], rows: Sequence[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def save_lookup(directory: Path, name: str, version: str, rows: Sequence[Row]) -> Lookups:
    """Write the rows over the lookup's file and read every lookup again; the caller checked
    the rows with `problems_in`. Raises StaleEdit when the file is not at `version`."""
    current = read_lookup_file(directory, name)
    if current.version != version:
        raise StaleEdit(f"{PREFIX}{name} was changed since this page was opened")
    path = path_of(directory, name)
    previous = path.read_text(encoding="utf-8-sig")
    _write_atomically(path, _as_csv(current.columns, rows))
    try:
        return load_lookups(directory)
    except LookupFileError:
        _write_atomically(path, previous)
        raise
