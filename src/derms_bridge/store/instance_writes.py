"""The writes every flow makes, its instance and its outcome, as rows for statements built
once, which a group commit (store/group_commit.py) runs together: made per write, building
and keying a statement cost more than SQLite took to run it, and each statement run per
write cost the group commit's thread, on PostgreSQL a round trip each, more than its rows.

A write is the rows it adds to each statement. Writes committed together run each
statement once with every write's rows, in STATEMENT_ORDER: the instances first, so that
the rows naming them find them; a write run alone runs its own rows in the same order. On
SQLite `run_together` runs them on a connection of SQLAlchemy's; on PostgreSQL psycopg runs
`statements` itself (store/database.py, KeptConnection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from sqlalchemy import Connection, Dialect, Executable, Table, bindparam, insert, update

from derms_bridge.schemas.ops import Activity
from derms_bridge.store.tables import ActivityRow, BusinessKeyRow, InstanceRow

_INSTANCES = cast(Table, InstanceRow.__table__)
_INSERT_INSTANCE = insert(_INSTANCES)
_INSERT_KEYS = insert(cast(Table, BusinessKeyRow.__table__))
_INSERT_ACTIVITIES = insert(cast(Table, ActivityRow.__table__))
_OUTCOME_FIELDS = ("status", "reply", "error", "skipped_reason", "updated_at", "finished_at")
_RECORD_OUTCOME = (
    update(_INSTANCES)
    .where(_INSTANCES.c.id == bindparam("finished_id"))
    .values({field: bindparam(f"new_{field}") for field in _OUTCOME_FIELDS})
)

STATEMENT_ORDER: tuple[Executable, ...] = (
    _INSERT_INSTANCE,
    _RECORD_OUTCOME,
    _INSERT_ACTIVITIES,
    _INSERT_KEYS,
)

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class InstanceWrite:
    """The rows one flow's write adds to each statement (none to most)."""

    rows: dict[Executable, Rows]


def run_together(writes: Sequence[InstanceWrite], connection: Connection) -> list[None]:
    """Every write's rows, in the transaction `connection` is in (SQLite's)."""
    for sql, parameters in statements(writes, connection.dialect):
        connection.exec_driver_sql(sql, parameters)
    return [None] * len(writes)


Parameters = tuple[Any, ...] | dict[str, Any]
#: A statement's SQL and its parameters: one execution's, or a list of one per execution.
Statement = tuple[str, Parameters | list[Parameters]]


#: Values up to which an insert on PostgreSQL lists its rows, each value a parameter of
#: its own; more go as arrays, a parameter per column, in psycopg's binary format. psycopg
#: converts a value in C, and an array in Python, element by element, after finding its
#: elements' type: for the one or two flows a transaction holds at a light load, arrays
#: (in text then) were half the group commit's CPU. Past 50 parameters psycopg parses a
#: statement's text anew at each execution (its MAX_CACHED_STATEMENT_PARAMS), which cost
#: more than arrays. A statement per number of rows, each prepared by the server once used
#: a few times (psycopg's prepare_threshold).
LISTED_VALUES = 50


def statements(writes: Sequence[InstanceWrite], dialect: Dialect) -> list[Statement]:
    """Every write's rows, each statement once for all of them: as an executemany, or on
    PostgreSQL an insert as one execution, of its rows listed or of arrays of their
    values."""
    found: list[Statement] = []
    for statement in STATEMENT_ORDER:
        rows = [row for write in writes for row in write.rows.get(statement, ())]
        if rows:
            listed = len(rows) if len(rows) * len(rows[0]) <= LISTED_VALUES else 0
            compiled = _compiled(statement, dialect, tuple(rows[0]), listed)
            found.append((compiled.sql, compiled.parameters(rows)))
    return found


Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL for one database, and its rows' values as the driver takes them,
    each converted by its column type's bind processor as SQLAlchemy does for a statement it
    runs: per row, in the order of the SQL's placeholders or by their names; for one
    execution, every row's in turn, or one array per column."""

    sql: str
    binds: tuple[tuple[str, Processor | None], ...]
    form: Literal["positional", "named", "listed", "arrays"]

    def parameters(self, rows: Rows) -> Parameters | list[Parameters]:
        if self.form == "listed":
            return tuple(
                row[name] if to is None else to(row[name])
                for row in rows
                for name, to in self.binds
            )
        if self.form == "arrays":
            return tuple(
                [row[name] for row in rows] if to is None else [to(row[name]) for row in rows]
                for name, to in self.binds
            )
        if self.form == "named":
            return [
                {name: row[name] if to is None else to(row[name]) for name, to in self.binds}
                for row in rows
            ]
        return [
            tuple(row[name] if to is None else to(row[name]) for name, to in self.binds)
            for row in rows
        ]


@lru_cache(maxsize=256)
def _compiled(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...], listed: int
) -> _Compiled:
    """Compiled once per database and set of columns (on PostgreSQL, an insert of `listed`
    rows; 0, of arrays). Run as a statement, SQLAlchemy built its parameters anew for every
    row, which cost the group commit's thread more than the database's own work on them.
    On PostgreSQL, psycopg sent and the server ran each row of an executemany as an
    execution of its own, where one insert takes all its rows; the outcomes' update stays
    one execution per row, each finding its instance by the primary key (joined to arrays,
    the planner scanned the whole table)."""
    compiled = cast(Any, statement).compile(dialect=dialect, column_keys=list(keys))
    names: list[str] = compiled.positiontup if dialect.positional else list(compiled.binds)
    binds = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in names
    )
    if dialect.positional:
        return _Compiled(sql=compiled.string, binds=binds, form="positional")
    if dialect.name != "postgresql" or statement is _RECORD_OUTCOME:
        return _Compiled(sql=compiled.string, binds=binds, form="named")
    quote = dialect.identifier_preparer.quote
    table = quote(cast(Any, statement).table.name)
    columns = ", ".join(quote(name) for name in names)
    casts = [_cast(compiled, compiled.binds[name].type, dialect) for name in names]
    # Only the names of the hub's own table and columns are written into the SQL; every
    # value is bound. An array in binary (%b) is converted by psycopg's Python element by
    # element but, unlike in text, not escaped: a fifth of the CPU for 16 rows.
    if listed:
        row = "(" + ", ".join(f"%s{cast_}" for cast_ in casts) + ")"
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * listed)}"  # noqa: S608
        return _Compiled(sql=sql, binds=binds, form="listed")
    arrays = ", ".join(f"%b{cast_}[]" for cast_ in casts)
    sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608
    return _Compiled(sql=sql, binds=binds, form="arrays")


def _cast(compiled: Any, type_: Any, dialect: Dialect) -> str:
    """`::TYPE`, the cast SQLAlchemy puts on a value of this type on PostgreSQL."""
    return str(compiled.render_bind_cast(type_, type_.dialect_impl(dialect), ""))


def created(row: dict[str, Any], keys: Sequence[tuple[str, str]]) -> InstanceWrite:
    """A first run's instance."""
    return InstanceWrite(
        {_INSERT_INSTANCE: [{**row, "attempts": 1}], _INSERT_KEYS: key_rows(row["id"], keys)}
    )


def finished(
    instance_id: str,
    outcome: dict[str, Any],
    activities: Sequence[Activity],
    keys: Sequence[tuple[str, str]],
) -> InstanceWrite:
    """A run's outcome, its activities numbered from 1."""
    return InstanceWrite(
        {
            _RECORD_OUTCOME: [
                {"finished_id": instance_id, **{f"new_{k}": v for k, v in outcome.items()}}
            ],
            _INSERT_ACTIVITIES: [
                {"instance_id": instance_id, "seq": n, **vars(activity)}
                for n, activity in enumerate(activities, start=1)
            ],
            _INSERT_KEYS: key_rows(instance_id, keys),
        }
    )


def key_rows(instance_id: str, keys: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """An instance's business keys as rows, each kind and value once."""
    unique = dict.fromkeys((kind, value[:200]) for kind, value in keys if value)
    return [{"instance_id": instance_id, "kind": k, "value": v} for k, v in unique]
