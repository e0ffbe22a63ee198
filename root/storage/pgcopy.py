"""Bulk idempotent insert for PostgreSQL: binary COPY into a temporary table, then
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.

COPY alone cannot skip rows that are already stored, and SQLAlchemy's
executemany (batched multi-row VALUES) reaches only ~60k rows/s here, so large
batches take this path (see ``Store.copy_threshold``). psycopg is optional: the
module imports without it, and is only called on a PostgreSQL engine.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa

_PG_TYPES: list[tuple[type, str]] = [
    (sa.BigInteger, "int8"),
    (sa.SmallInteger, "int2"),
    (sa.Integer, "int4"),
    (sa.Float, "float8"),
    (sa.LargeBinary, "bytea"),
    (sa.JSON, "text"),  # json's binary input is its UTF-8 text; we dump it ourselves
    (sa.Text, "text"),
]


def _pg_type(col: sa.Column) -> str:
    for sa_type, name in _PG_TYPES:
        if isinstance(col.type, sa_type):
            return name
    raise TypeError(f"no COPY type for column {col.table.name}.{col.name} ({col.type!r})")


def pg_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """psycopg's (unavailable, refused) exception classes; empty without psycopg.

    Raw psycopg errors surface from COPY, which bypasses SQLAlchemy's wrapping.
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the pg extra is not installed
        return (), ()
    return (psycopg.OperationalError, psycopg.InterfaceError), (psycopg.Error,)


def copy_insert_ignore(
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    dumps: Callable[[Any], str],
    returning: tuple[str, ...] = (),
) -> list[tuple]:
    """Insert ``rows`` into ``table`` inside ``conn``'s transaction, skipping
    rows whose key is already there (or repeated within ``rows``); returns the
    ``returning`` columns of the rows actually inserted."""
    cols = list(table.columns)
    json_cols = {c.name for c in cols if isinstance(c.type, sa.JSON)}
    keys = [c.name for c in cols]
    tuples = ([dumps(row[k]) if k in json_cols else row[k] for k in keys] for row in rows)
    return copy_rows(conn, table, tuples, "ON CONFLICT DO NOTHING", returning)


def copy_rows(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[Sequence[Any]],
    on_conflict: str,
    returning: tuple[str, ...] = (),
) -> list[tuple]:
    """COPY ``rows`` (values in the table's column order) into a staging table,
    then ``INSERT INTO table SELECT ... <on_conflict>``."""
    cols = list(table.columns)
    names = ", ".join(f'"{c.name}"' for c in cols)
    staging = f"_in_{table.name}"
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" (LIKE "{table.name}") ON COMMIT DELETE ROWS')
        with cur.copy(f'COPY "{staging}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([_pg_type(c) for c in cols])
            for row in rows:
                copy.write_row(row)
        ret = f" RETURNING {', '.join(returning)}" if returning else ""
        cur.execute(f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "{staging}" {on_conflict}{ret}')
        got = cur.fetchall() if returning else []
        # Empty it now, not at commit: a second COPY into the same table in this
        # transaction would otherwise insert (and, for rollups, add) these again.
        cur.execute(f'TRUNCATE "{staging}"')
        return got
