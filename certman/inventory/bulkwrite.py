"""Batched INSERTs and UPDATEs for the bulk path, sent straight to the DBAPI's executemany.

SQLAlchemy's statement execution processes every bound value of every row through the
column types (15,000 calls for 1,000 certificates, more than the SQL itself costs). Here
each column's own bind processor (the same conversion SQLAlchemy applies, so SQLite and
PostgreSQL store exactly what the ORM would) runs once per distinct value of the batch:
a batch shares a handful of timestamps. The statements run on the session's connection,
in its transaction, so they commit (or roll back) with everything else the caller does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session

# Bound parameters per statement: below SQLite's 32,766 and PostgreSQL's 65,535.
_MAX_PARAMETERS = 30000
_MAX_ROWS_PER_INSERT = 1000

Row = Mapping[str, Any]
_Convert = Callable[[Any], Any]


def insert_returning(
    session: Session,
    table: Table,
    rows: Sequence[Row],
    returning: Sequence[str],
    *,
    columns: Sequence[str] | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT ``rows`` (each with the same keys) and return ``returning`` of each new row.

    ``columns``: the keys of the rows to write (by default, all of them). The columns'
    Python defaults fill what the rows leave out, as in an ORM or Core insert.

    Multi-row VALUES statements with RETURNING (SQLite >= 3.35, PostgreSQL), as
    SQLAlchemy's "insertmanyvalues" sends them; the rows come back in no promised order,
    so ``returning`` should name a unique column to match them by.
    """
    if not rows:
        return []
    conn = session.connection()
    rows, columns = _with_defaults(table, rows, columns)
    values = _values(conn.dialect, table, columns, rows)
    prepare = conn.dialect.identifier_preparer
    mark = _placeholder(conn.dialect)
    one_row = "(" + ", ".join([mark] * len(columns)) + ")"
    head = (
        f"INSERT INTO {prepare.format_table(table)} "
        f"({', '.join(prepare.quote(c) for c in columns)}) VALUES "
    )
    tail = f" RETURNING {', '.join(prepare.quote(c) for c in returning)}"
    page = max(1, min(_MAX_ROWS_PER_INSERT, _MAX_PARAMETERS // len(columns)))
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(values), page):
        chunk = values[start : start + page]
        statement = head + ", ".join([one_row] * len(chunk)) + tail
        params = tuple(v for row in chunk for v in row)
        found.extend(tuple(r) for r in _driver(conn, statement, params).fetchall())
    return found


def insert_many(session: Session, table: Table, rows: Sequence[Row]) -> None:
    """INSERT ``rows`` (each with the same keys) with one executemany; the columns' Python
    defaults fill what the rows leave out, as in an ORM or Core insert."""
    if not rows:
        return
    conn = session.connection()
    rows, columns = _with_defaults(table, rows)
    prepare = conn.dialect.identifier_preparer
    mark = _placeholder(conn.dialect)
    statement = (
        f"INSERT INTO {prepare.format_table(table)} "
        f"({', '.join(prepare.quote(c) for c in columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    _driver(conn, statement, _values(conn.dialect, table, columns, rows))


def update_by_id(
    session: Session, table: Table, rows: Sequence[Row], columns: Sequence[str]
) -> None:
    """UPDATE ``columns`` of each row, found by its ``id``, with one executemany."""
    if not rows:
        return
    conn = session.connection()
    prepare = conn.dialect.identifier_preparer
    mark = _placeholder(conn.dialect)
    assignments = ", ".join(f"{prepare.quote(c)} = {mark}" for c in columns)
    statement = (
        f"UPDATE {prepare.format_table(table)} SET {assignments} "
        f"WHERE {prepare.quote('id')} = {mark}"
    )
    _driver(conn, statement, _values(conn.dialect, table, [*columns, "id"], rows))


def _with_defaults(
    table: Table, rows: Sequence[Row], columns: Sequence[str] | None = None
) -> tuple[Sequence[Row], list[str]]:
    """The rows and the columns to write: ``columns`` (by default, the rows' keys) and the
    Python defaults of the columns left out, filled in each row."""
    given = list(rows[0]) if columns is None else list(columns)
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:
            raise NotImplementedError(
                f"Column {table.name}.{column.name} has a computed default; give its value."
            )
        defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    if not defaults:
        return rows, given
    return [{**row, **defaults} for row in rows], [*given, *defaults]


def _driver(conn: Connection, statement: str, params: Any) -> Any:
    # A list of tuples is sent with executemany, one tuple with execute.
    return conn.exec_driver_sql(statement, params)


def _placeholder(dialect: Dialect) -> str:
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(
        f"The bulk path does not speak the {dialect.paramstyle!r} parameter style of the "
        f"{dialect.name} driver; use SQLite or PostgreSQL with psycopg."
    )


def _values(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[Row]
) -> list[tuple[Any, ...]]:
    """Each row's values in ``columns`` order, converted as the column types convert them."""
    converters = [_memoised(table.c[c].type._cached_bind_processor(dialect)) for c in columns]
    pick = itemgetter(*columns)
    values = [pick(row) for row in rows] if len(columns) > 1 else [(pick(r),) for r in rows]
    if not any(converters):
        return values
    # Column by column: each converter maps its whole column, the rows are zipped back.
    by_column = list(zip(*values, strict=True))
    for index, convert in enumerate(converters):
        if convert is not None:
            by_column[index] = tuple(map(convert, by_column[index]))
    return list(zip(*by_column, strict=True))


def _memoised(process: _Convert | None) -> _Convert | None:
    """``process`` run once per distinct value (it is a pure function of the value)."""
    if process is None:
        return None
    done: dict[Hashable, Any] = {}

    def convert(value: Any) -> Any:
        # Keyed by type too, since True == 1 (a naive datetime never equals an aware one).
        key = (type(value), value)
        try:
            return done[key]
        except KeyError:
            done[key] = result = process(value)
            return result
        except TypeError:  # unhashable: convert it every time
            return process(value)

    return convert
