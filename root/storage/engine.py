"""Engines and error translation for the root's store.

``make_engine`` opens SQLite (WAL, synchronous=NORMAL, a busy timeout) or
PostgreSQL (connect and lock timeouts, stale connections replaced) from the URL
alone; ``Translate`` turns driver errors into ``StoreUnavailable`` (the database is
away: keep the data, retry later) or ``StoreError`` (it refused the data itself).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from .pgcopy import pg_error_types

log = logging.getLogger("clumon.root.storage.engine")

#: Page size of new SQLite files: chunk rows of ~1 KB fill 16 KiB pages better than
#: 4 KiB ones (figures: bench/README.md).
SQLITE_PAGE_SIZE = 16384

#: Seconds before a PostgreSQL connection attempt to an unresponsive host fails.
PG_CONNECT_TIMEOUT = 10


class StoreError(Exception):
    """The database refused the data itself (not its availability): retrying the
    same batch unchanged will fail again."""


class StoreUnavailable(StoreError):
    """The database is away (connection refused, file unwritable, locked): the
    caller keeps its frames and retries later; nothing was committed."""


def _jsonable(value: Any) -> Any:
    """Make msgpack-decoded values JSON-safe: bytes as hex, non-finite floats as
    None (PostgreSQL's json type rejects NaN), tuples as lists, keys as str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False)


def _sqlite_pragmas(busy_timeout: float):
    def on_connect(dbapi_conn, _record) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours (below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # Takes effect only on a new file (before WAL): chunk rows of ~1 KB
        # left a quarter of each 4 KiB page empty (docs/ARCHITECTURE.md).
        cur.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    return on_connect


def make_engine(url: str, busy_timeout: float = 5.0, immediate: bool = False) -> sa.Engine:
    """An engine for ``url`` set up for the root: SQLite in WAL mode with
    ``synchronous=NORMAL`` and a busy timeout; PostgreSQL with pre-ping (a
    restarted server's dead connections are replaced, not reported), a connect
    timeout and ``lock_timeout`` = ``busy_timeout``.

    ``immediate`` (SQLite): transactions take the write lock when they begin,
    waiting up to the busy timeout for it; a deferred one that read first and
    then writes fails at once when another writer committed in between."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            u,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            json_serializer=_dumps,
        )
        sa_event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        sa_event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    engine = sa.create_engine(
        u, pool_pre_ping=True, json_serializer=_dumps, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT}
    )
    sa_event.listen(engine, "connect", _pg_settings(busy_timeout))
    return engine


def _pg_settings(lock_timeout: float):
    def on_connect(dbapi_conn, _record) -> None:
        # A lock held elsewhere must end in StoreUnavailable, not a writer stuck forever.
        dbapi_conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
        dbapi_conn.commit()

    return on_connect


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
) + pg_error_types()[0]
_REFUSED: tuple[type[BaseException], ...] = (sa.exc.DBAPIError, sqlite3.Error) + pg_error_types()[1]


class Translate:
    """Context manager turning driver errors into StoreUnavailable / StoreError."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et, ev, tb) -> bool:
        if ev is None:
            return False
        if isinstance(ev, _UNAVAILABLE) or (isinstance(ev, sa.exc.DBAPIError) and ev.connection_invalidated):
            raise StoreUnavailable(f"database unavailable: {_first_line(ev)}") from ev
        if isinstance(ev, _REFUSED):
            raise StoreError(f"database refused the data: {_first_line(ev)}") from ev
        return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__




class FileGuard:
    """Notices a SQLite file deleted or replaced while open: SQLite would go on
    writing the unlinked inode, and every frame acknowledged after that would be
    lost with it. Once lost it stays lost until the root is restarted (which opens
    the file anew). Nothing to guard for PostgreSQL or an in-memory database."""

    def __init__(self, engine: sa.Engine):
        db = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = db if db and db != ":memory:" and not db.startswith("file:") else None
        self._id: tuple[int, int] | None = None
        self.lost = ""

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def opened(self) -> None:
        """Remember the file as it is now (after the schema was made)."""
        if self.path is not None:
            self._id = self._stat()

    def check(self) -> None:
        """Raise ``StoreUnavailable`` once the file is not the one opened."""
        if self._id is None:
            return
        if not self.lost:
            now = self._stat()
            if now != self._id:
                what = "deleted" if now is None else "replaced by another file"
                self.lost = (f"database file {self.path} was {what} while open: nothing more is stored or "
                             "acknowledged; restart the root to open it anew")
                log.error("%s", self.lost)
        if self.lost:
            raise StoreUnavailable(self.lost)
