"""The lookups and ConfigProps, loaded from CSV files in `lookups_dir`.

Each file is named for its lookup (``OUTL-BRT-DACS_DRMS_EventType.csv``). Its first
row names the columns; every other row maps the first column to the second (further
columns are kept for reference). An export from the cloud service starts with an
extra ``DVM,<name>`` row, which is accepted and skipped.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from derms_bridge.errors import LookupMiss

PREFIX = "OUTL-BRT-DACS_DRMS_"

#: Every lookup the flows read; a missing file is a configuration error.
REQUIRED = (
    "ConfigProps",
    "Email_ID",
    "EnrollmentStatus",
    "AssetSpec",
    "AssetType",
    "Routing",
    "DeviceHeadendStatus",
    "EventType",
    "StageStatus",
    "EventOutcome",
    "CycleFrequency",
    "WeekDay",
    "AllowEventDays",
)

#: ConfigProps rows the flows cannot do without.
REQUIRED_PROPERTIES = (
    "dacs.enroll.default.source",
    "notification.email.error.flag",
    "notification.type.email",
)

DEFAULT_ROUTE = "*"

#: ConfigProps `notification.type.email`, read as the reference's flag ("if both are set
#: to true") or as the channel's name: whether the error email goes.
EMAIL_TYPE = "notification.type.email"
EMAIL_TYPE_VALUES = {"true": True, "email": True, "false": False}


def email_type_problem(value: str) -> str | None:
    """Why a `notification.type.email` value is not one the hub reads, or None."""
    if value.strip().lower() in EMAIL_TYPE_VALUES:
        return None
    return (
        f"{EMAIL_TYPE} is {value!r}; it must be true or email (error emails go) "
        "or false (they do not)"
    )


#: Where a wheel keeps the shipped lookups (the repository's config/lookups).
PACKAGED_LOOKUPS = Path(__file__).parent / "default_lookups"


def shipped_lookups_dir() -> Path:
    """The lookups the project ships: beside the package in a wheel, config/lookups in a
    checkout (an editable install)."""
    if PACKAGED_LOOKUPS.is_dir():
        return PACKAGED_LOOKUPS
    return Path(__file__).resolve().parents[2] / "config" / "lookups"


def sandbox_lookups_dir(var_dir: Path) -> Path:
    """The sandbox's own copy of the shipped lookups, made at its first start, so that an
    edit in its console touches neither the installed package nor the checkout."""
    copy = var_dir / "sandbox-lookups"
    if not copy.is_dir():
        shutil.copytree(shipped_lookups_dir(), copy)
    return copy


class LookupFileError(Exception):
    """A lookup file that cannot be used; `problems` name file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Lookup:
    name: str
    columns: tuple[str, ...]
    rows: Mapping[str, str]
    lines: Mapping[str, int] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return PREFIX + self.name


@dataclass(frozen=True)
class Lookups:
    """An immutable snapshot of every lookup; replace it whole to change one."""

    tables: Mapping[str, Lookup] = field(default_factory=dict)

    def translate(self, name: str, value: str) -> str:
        """First column to second, e.g. translate("EventType", "ECONOMIC") == "X1EC"."""
        table = self.tables.get(name)
        if table is None or value not in table.rows:
            raise LookupMiss(PREFIX + name, value)
        return table.rows[value]

    def prop(self, name: str) -> str:
        return self.translate("ConfigProps", name)

    def flag(self, name: str) -> bool:
        return self.prop(name).strip().lower() in {"true", "yes", "y", "1"}

    def error_emails_on(self) -> bool:
        """The reference's gate on the error email: both properties true."""
        return self.flag("notification.email.error.flag") and EMAIL_TYPE_VALUES.get(
            self.prop(EMAIL_TYPE).strip().lower(), False
        )

    def emails(self, key: str) -> list[str]:
        """The addresses of an Email_ID row; a row may list several, split by , or ;."""
        try:
            raw = self.translate("Email_ID", key)
        except LookupMiss:
            return []
        return [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]

    def derms_connection_for(self, division: str | None) -> str:
        """The Routing row for a division, else its `*` row."""
        routes = self.tables["Routing"].rows if "Routing" in self.tables else {}
        if division and division in routes:
            return routes[division]
        if DEFAULT_ROUTE in routes:
            return routes[DEFAULT_ROUTE]
        raise LookupMiss(PREFIX + "Routing", division or "")


def _read_table(path: Path, name: str) -> tuple[Lookup, list[str]]:
    problems: list[str] = []
    rows: dict[str, str] = {}
    lines: dict[str, int] = {}
    columns: tuple[str, ...] = ()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for record in reader:
                line = reader.line_num
                if not record or all(not cell.strip() for cell in record):
                    continue
                if not columns and record[0].strip().upper() == "DVM":
                    continue
                if not columns:
                    columns = tuple(cell.strip() for cell in record)
                    if len(columns) < 2:
                        problems.append(f"{path}:{line}: the header needs two columns or more")
                        break
                    continue
                key = record[0].strip()
                if len(record) < 2:
                    problems.append(f"{path}:{line}: {columns[0]} {key!r} has no {columns[1]}")
                    continue
                if not key:
                    problems.append(f"{path}:{line}: {columns[0]} is empty")
                    continue
                if key in rows:
                    problems.append(f"{path}:{line}: {columns[0]} {key!r} appears twice")
                    continue
                rows[key] = record[1].strip()
                lines[key] = line
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path}: cannot be read: {exc}")
    if not columns and not problems:
        problems.append(f"{path}:1: the file is empty; it needs a header row")
    return Lookup(name=name, columns=columns, rows=rows, lines=lines), problems


def load_lookups(directory: Path) -> Lookups:
    """Read every lookup file; raise LookupFileError naming each mistake."""
    problems: list[str] = []
    tables: dict[str, Lookup] = {}
    if not directory.is_dir():
        raise LookupFileError([f"{directory}: the lookups directory does not exist"])
    for path in sorted(directory.glob(f"{PREFIX}*.csv")):
        name = path.stem.removeprefix(PREFIX)
        table, found = _read_table(path, name)
        problems.extend(found)
        tables[name] = table
    for name in REQUIRED:
        if name not in tables:
            problems.append(f"{directory / (PREFIX + name)}.csv: missing")
    config_props = tables.get("ConfigProps")
    if config_props is not None:
        for prop in REQUIRED_PROPERTIES:
            if prop not in config_props.rows:
                where = directory / f"{PREFIX}ConfigProps.csv"
                problems.append(f"{where}: property {prop} is missing")
        email_type = config_props.rows.get(EMAIL_TYPE)
        problem = email_type_problem(email_type) if email_type is not None else None
        if problem is not None:
            where = directory / f"{PREFIX}ConfigProps.csv"
            problems.append(f"{where}:{config_props.lines[EMAIL_TYPE]}: {problem}")
    routing = tables.get("Routing")
    if routing is not None and DEFAULT_ROUTE not in routing.rows:
        problems.append(f"{directory / (PREFIX + 'Routing')}.csv: no '*' row for other divisions")
    if problems:
        raise LookupFileError(problems)
    return Lookups(tables=tables)
