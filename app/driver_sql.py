"""Core statements compiled once per database and run on the driver's cursor, for the busiest write path.

`Connection.execute` spends about 20 µs of Python per statement (execution context, parameter and
result processing) where SQLite itself needs 1 to 5; saving an order runs six per request (the
signed-in user, then five for the save). A `DriverStatement` keeps what SQLAlchemy works out for a
statement (its SQL in the driver's parameter style, the order of the parameters, each column type's
bind and result processors) and replays it on the same connection, inside the same transaction.
SQLAlchemy still writes all the SQL and converts every value; only its per-call machinery is
skipped. Driver errors are wrapped into SQLAlchemy's exceptions, so callers catch `IntegrityError`
as usual. On PostgreSQL the SQL is rewritten once with PostgreSQL's own `$1` placeholders and run on
psycopg's `RawCursor`, which skips psycopg's parsing and reordering of the values on every call.

Statements with Python-side defaults to compute (`default=`/`onupdate=` on a column the statement
leaves out) are refused when first compiled: SQLAlchemy computes those per call, this does not.
`before_cursor_execute` listeners are called (with no execution context); the engine's echo log
does not show these statements.
"""
from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class _Parameter(NamedTuple):
    """Where one placeholder takes its value: a caller's key (and list index), or a literal."""

    name: str  # the placeholder's name in named styles
    key: str | None  # the caller's key; None for a literal bound in the statement
    index: int | None  # position in the caller's list, for an expanded IN
    literal: Any  # already converted
    process: Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Plan:
    """A statement as compiled for one dialect (and one IN-list length)."""

    sql: str  # what the driver runs, as text (listeners and error messages show it with the values)
    query: str | bytes  # the same, as the driver is given it
    raw: bool  # psycopg's RawCursor, with PostgreSQL's own $1 placeholders
    positional: bool
    parameters: tuple[_Parameter, ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # the columns that have a result processor
    row_type: type | None  # a named tuple of the selected columns' keys

    def bind(self, values: Mapping[str, Any]):
        """The driver's parameters for these values: a tuple (qmark, format) or a dict (named styles)."""
        bound = []
        for _name, key, index, literal, process in self.parameters:
            if key is None:
                bound.append(literal)
                continue
            value = values[key] if index is None else values[key][index]
            bound.append(value if process is None or value is None else process(value))
        if self.positional:
            return tuple(bound)
        return {p.name: value for p, value in zip(self.parameters, bound)}

    def convert(self, row: Sequence) -> tuple:
        """A driver row with each column's result processor applied, as a named tuple."""
        if self.results:
            row = list(row)
            for i, process in self.results:
                if row[i] is not None:
                    row[i] = process(row[i])
        return self.row_type._make(row)


class DriverStatement:
    """A Core SELECT, UPDATE or DELETE replayed on the DBAPI cursor of a SQLAlchemy connection."""

    def __init__(self, statement: sa.Executable, expanding: str | None = None, postgresql_many: str | None = None):
        """`expanding` names the statement's one expanding IN parameter, if it has one.

        `postgresql_many` is the same write for a whole batch, as one PostgreSQL statement that reads
        its rows from arrays (`unnest`), each statement parameter written `{name}` and given as the
        array of that parameter's values (converted as for the statement). run_many uses it on
        psycopg: one statement instead of one per row, each of which costs both processes a message.
        """
        self.statement = statement
        self.expanding = expanding
        self.postgresql_many = postgresql_many
        self._plans: dict[tuple[str, int], _Plan] = {}
        self._batches: dict[str | bytes, tuple[_Plan, tuple[int, ...]]] = {}  # by the row plan's query

    def all(self, conn: sa.Connection, values: Mapping[str, Any]) -> list[tuple]:
        """Every row, converted."""
        plan = self._plan_for(conn.dialect, values)
        cursor = self._run(conn, plan, plan.bind(values))
        return [plan.convert(row) for row in cursor.fetchall()]

    def first(self, conn: sa.Connection, values: Mapping[str, Any]) -> tuple | None:
        """The first row, converted, or None."""
        plan = self._plan_for(conn.dialect, values)
        row = self._run(conn, plan, plan.bind(values)).fetchone()
        return None if row is None else plan.convert(row)

    def run(self, conn: sa.Connection, values: Mapping[str, Any]) -> int:
        """Run a write once; the number of rows it matched."""
        plan = self._plan_for(conn.dialect, values)
        return self._run(conn, plan, plan.bind(values)).rowcount

    def run_many(self, conn: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run a write once per set of values (the driver's executemany); the rows matched in all."""
        rows = list(rows)
        if not rows:
            return 0
        plan = self._plan_for(conn.dialect, rows[0])
        if plan.raw and self.postgresql_many is not None:
            batch, columns = self._batch_for(plan)
            bound = [plan.bind(values) for values in rows]
            return self._run(conn, batch, tuple([row[i] for row in bound] for i in columns)).rowcount
        return self._run(conn, plan, [plan.bind(values) for values in rows], many=True).rowcount

    def _batch_for(self, plan: _Plan) -> tuple[_Plan, tuple[int, ...]]:
        """postgresql_many as a plan with $1 placeholders, and which of `plan`'s parameters each one takes."""
        batch = self._batches.get(plan.query)
        if batch is None:
            index = {p.key: i for i, p in enumerate(plan.parameters) if p.key is not None}
            names = list(dict.fromkeys(re.findall(r"\{(\w+)\}", self.postgresql_many)))
            sql = re.sub(r"\{(\w+)\}", lambda m: f"${names.index(m.group(1)) + 1}", self.postgresql_many)
            batch = self._batches[plan.query] = (_Plan(sql, sql.encode(), True, True, plan.parameters, (), None),
                                                 tuple(index[name] for name in names))
        return batch

    def _run(self, conn: sa.Connection, plan: _Plan, parameters, many: bool = False):
        """Execute on the connection's driver cursor; driver errors come out as SQLAlchemy's."""
        if plan.raw:
            cursor = conn.dialect.loaded_dbapi.RawCursor(conn.connection.driver_connection)
        else:
            cursor = conn.connection.cursor()
        for listener in conn.dispatch.before_cursor_execute:  # query counters and loggers still see it
            listener(conn, cursor, plan.sql, parameters, None, many)
        try:
            if many:
                cursor.executemany(plan.query, parameters)
            else:
                cursor.execute(plan.query, parameters)
        except conn.dialect.loaded_dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(plan.sql, parameters, error, conn.dialect.loaded_dbapi.Error,
                                             dialect=conn.dialect) from error
        return cursor

    def _plan_for(self, dialect: Dialect, values: Mapping[str, Any]) -> _Plan:
        """The cached plan for this dialect and IN-list length, compiled on first use."""
        length = len(values[self.expanding]) if self.expanding else 0
        plan = self._plans.get((dialect.name, length))
        if plan is None:
            plan = self._plans[(dialect.name, length)] = self._compile(dialect, length)
        return plan

    def _compile(self, dialect: Dialect, length: int) -> _Plan:
        """Let SQLAlchemy write the SQL and pick each value's processor."""
        statement = self.statement
        if self.expanding:
            if length == 0:
                raise ValueError(f"an empty list for {self.expanding!r}")
            statement = statement.params({self.expanding: [None] * length})
        compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": bool(self.expanding)})
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("this statement needs Python-side column defaults; run it with Connection.execute")
        if compiled.positional:
            names = compiled.positiontup
        else:  # named: each name once; the expanded IN list's are numbered from 1
            names = [name for name in dict.fromkeys(compiled.bind_names.values()) if name != self.expanding]
            names += [f"{self.expanding}_{i}" for i in range(1, length + 1)] if self.expanding else []
        parameters = []
        for name in names:
            index = None
            bind = compiled.binds.get(name)
            if bind is None and self.expanding and name.startswith(self.expanding + "_"):
                bind, index = compiled.binds[self.expanding], int(name.rpartition("_")[2]) - 1
            if bind.callable is not None:
                raise ValueError(f"{name!r} is computed per call; run this statement with Connection.execute")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required or index is not None:
                parameters.append(_Parameter(name, bind.key, index, None, process))
            else:
                literal = bind.effective_value
                if process is not None and literal is not None:
                    literal = process(literal)
                parameters.append(_Parameter(name, None, None, literal, None))
        results, row_type = (), None
        if isinstance(self.statement, sa.Select):
            columns = self.statement.selected_columns
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
            results = tuple((i, process) for i, process in enumerate(processors) if process is not None)
            # Repeated keys (two tables' "id") become _2, _3...: read those by position.
            row_type = namedtuple("Row", columns.keys(), rename=True)
        sql = str(compiled)
        if dialect.driver == "psycopg" and not compiled.positional:
            sql = _dollar_placeholders(sql, [p.name for p in parameters])
            return _Plan(sql, sql.encode(), True, True, tuple(parameters), results, row_type)
        return _Plan(sql, sql, False, compiled.positional, tuple(parameters), results, row_type)


_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")


def _dollar_placeholders(sql: str, names: Sequence[str]) -> str:
    """psycopg's %(name)s placeholders as PostgreSQL's $1, $2... in the order of `names`.

    psycopg's own cursor parses each query for its placeholders and reorders the values of each call
    (it caches the parsing for queries of at most 50 parameters only). Done once here, psycopg's
    RawCursor sends the query as it is, with the values in order. SQLAlchemy wrote a literal % as %%.
    """
    number = {name: i for i, name in enumerate(names, start=1)}
    return _PYFORMAT.sub(lambda m: "%" if m.group(1) is None else f"${number[m.group(1)]}", sql)

