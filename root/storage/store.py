"""The root's storage: one ``Store`` over SQLite (embedded) or PostgreSQL (server).

The backend is chosen by the SQLAlchemy URL alone (``sqlite:///path.db`` or
``postgresql+psycopg://...``). Every method blocks: the root calls ``write`` from
one writer thread and the reads from an executor; the engine's pool hands each
thread its own connection.

Trouble with the database (refused connection, file that cannot be opened or
written, a lock held too long, a server gone away) surfaces as
``StoreUnavailable``, never as a driver error, and always after a rollback: the
caller keeps its frames (and holds back their ACKs) and calls ``write`` again
later. Because every write is idempotent, writing a batch twice is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from . import jobs, utilization
from . import schema as S
from .compactor import Compactor
from .planner import Planner
from .history import History, HistoryConfig
from .engine import FileGuard, StoreError, StoreUnavailable, Translate, _dumps, make_engine
from .pgcopy import copy_insert_ignore
from .logs import LogRow, LogStore
from .rows import DictionaryRow, EventRow, FrameRow, NodeRow, StateRow
from .rows import dict_dict as _dict_dict, event_dict as _event_dict, frame_dict as _frame_dict
from .rows import node_dict as _node_dict

log = logging.getLogger("clumon.root.storage.store")

__all__ = [
    "DictionaryRow", "EventRow", "FrameRow", "NodeRow", "StateRow", "Store", "StoreError", "StoreUnavailable",
    "make_engine",
]

#: Batches at least this large go through COPY on PostgreSQL (it was already
#: faster than executemany at 100 rows; docs/ARCHITECTURE.md "Root storage").
COPY_THRESHOLD = 100
class Store:
    """The root's tables behind a small blocking API; see the module docstring.

    The schema is created or upgraded on first contact. If the database is away
    when the Store is made, construction still succeeds and the first call that
    reaches the database retries it (raising ``StoreUnavailable`` meanwhile), so
    a root can start before its database.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 5.0,
        copy_threshold: int = COPY_THRESHOLD,
        history: HistoryConfig | None = None,
        log_retention: float = 30 * 86400.0,
    ):
        self.url = url
        self.history = History(history)
        self.engine = make_engine(url, busy_timeout)
        self.backend = self.engine.dialect.name
        self.copy_threshold = copy_threshold
        # Compaction writes through its own connections (on SQLite, beginning
        # IMMEDIATE) so that it can run beside write() in a thread of its own.
        sqlite = self.backend == "sqlite"
        self.compactor = Compactor(self.history, self.engine, make_engine(url, busy_timeout, immediate=True)
                                   if sqlite else self.engine, one_writer=sqlite,
                                   planner=Planner(url, busy_timeout))
        self._insert = pg_dialect.insert if self.backend == "postgresql" else sqlite_dialect.insert
        #: log lines (root/storage/logs.py) and how long they are kept
        self.logs = LogStore(self._insert)
        self.log_retention = log_retention
        self._logs_expired_at = 0.0
        self._schema_lock = threading.Lock()
        self.schema_version = 0
        #: rollup rows written by maintain() (the rest ride along with writes)
        self.rollup_rows_written = 0
        #: job rows upserted from sched_jobs events
        self.jobs_written = 0
        #: notices a SQLite file deleted or replaced while open
        self.file_guard = FileGuard(self.engine)
        try:
            self._ensure_schema()
        except StoreUnavailable:
            pass

    @property
    def rollup_rows_rejected(self) -> int:
        """Rollup rows the database refused (dropped, so frames still get stored)."""
        return self.history.rows_rejected

    def _ensure_schema(self) -> None:
        if self.schema_version:
            return
        with self._schema_lock, Translate():
            if not self.schema_version:
                version = S.upgrade(self.engine)
                with self.engine.connect() as conn:
                    self.history.load(conn)
                self.file_guard.opened()
                self.schema_version = version

    # --- writing -----------------------------------------------------------

    def write(
        self,
        frames: list[FrameRow] = (),
        dictionaries: list[DictionaryRow] = (),
        events: list[EventRow] = (),
        nodes: list[NodeRow] = (),
    ) -> list[EventRow]:
        """Store everything in ONE transaction, idempotently: frames, dictionaries
        and events that are already there are skipped; nodes are upserted by name
        (the last row of a name in the batch wins) and each node's
        ``(since, state)`` is added to the state history. ``frames`` may hold
        ``LogRow``s (LOG frames): their lines not stored yet are stored, and the
        ``log_match`` events of those lines are returned (stored with them).

        Raises ``StoreUnavailable`` when the database cannot be reached or
        written; then nothing of the batch is committed.
        """
        self._ensure_schema()
        self.file_guard.check()
        h = self.history
        h.learn(dictionaries, nodes)
        log_rows = [f for f in frames if type(f) is LogRow]
        if log_rows:
            frames = [f for f in frames if type(f) is not LogRow]
        log_events: list[EventRow] = []
        log_done = None
        # Until commit, the compactor may not retire frames (root/storage/compactor.py).
        with h.frames_lock, Translate(), self.engine.begin() as conn:
            if log_rows:
                log_events, log_done = self.logs.write(conn, log_rows)
                if log_events:
                    events = [*events, *log_events]
            fresh = h.new(frames)
            inserted = self._insert_frames(conn, fresh) if fresh else []
            if dictionaries:
                self._insert_ignore(conn, S.dictionaries, [_dict_dict(d) for d in dictionaries])
            if events:
                job_events = [e for e in events if e.type == jobs.EVENT]
                if job_events:
                    self.jobs_written += jobs.write(conn, self._insert, job_events)
                    events = [jobs.slim(e) if e.type == jobs.EVENT else e for e in events]
                self._insert_ignore(conn, S.events, [_event_dict(e) for e in events])
            if nodes:
                self._upsert_nodes(conn, nodes)
            # A small, bounded share of the drained rollups rides along, so they
            # keep flowing between maintain() calls without holding ACKs up.
            taken = h.write_slice_safely(conn, self.copy_threshold, h.config.write_slice_rows)
        h.slice_committed(taken)
        h.committed(self.engine.connect, inserted)
        if log_done is not None:
            self.logs.committed(log_done)
        return log_events

    def _insert_frames(self, conn: sa.Connection, frames: list[FrameRow]) -> list[FrameRow]:
        """Insert, returning the frames that were new (only those feed rollups)."""
        if self.backend == "sqlite" and _sqlite_insert_all_new(conn, frames):
            return frames
        rows = [_frame_dict(f) for f in frames]
        key = ("node", "incarnation", "seq")
        if self.backend == "postgresql" and len(rows) >= self.copy_threshold:
            new = copy_insert_ignore(conn, S.frames, rows, _dumps, returning=key)
        else:
            t = S.frames
            stmt = self._insert(t).on_conflict_do_nothing().returning(t.c.node, t.c.incarnation, t.c.seq)
            new = conn.execute(stmt, rows).all()
        new_keys = {tuple(k) for k in new}
        return [f for f in frames if (f.node, f.incarnation, f.seq) in new_keys]

    def _insert_ignore(self, conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
        if self.backend == "postgresql" and len(rows) >= self.copy_threshold:
            copy_insert_ignore(conn, table, rows, _dumps)
            return
        conn.execute(self._insert(table).on_conflict_do_nothing(), rows)

    def _upsert_nodes(self, conn: sa.Connection, nodes: Iterable[NodeRow]) -> None:
        latest = {n.name: n for n in nodes}
        rows = [_node_dict(n) for n in latest.values()]
        stmt = self._insert(S.nodes)
        stmt = stmt.on_conflict_do_update(
            index_elements=[S.nodes.c.name],
            set_={c.name: stmt.excluded[c.name] for c in S.nodes.columns if c.name != "name"},
        )
        conn.execute(stmt, rows)
        history = [
            {"node": n.name, "since": n.since, "state": n.state, "incarnation": n.incarnation}
            for n in latest.values()
        ]
        conn.execute(self._insert(S.state_history).on_conflict_do_nothing(), history)

    def forget(self, node: str) -> bool:
        """Drop ``node`` from the live view (its history stays until retention
        removes it). Returns whether the node was there."""
        self._ensure_schema()
        with Translate(), self.engine.begin() as conn:
            return conn.execute(S.nodes.delete().where(S.nodes.c.name == node)).rowcount > 0

    # --- reading -----------------------------------------------------------

    def _rows(self, query: sa.Executable) -> list[sa.Row]:
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return list(conn.execute(query))

    def dictionaries(self, node: str | None = None) -> list[DictionaryRow]:
        """Stored dictionaries (of one node, or all), by node, incarnation, version."""
        t = S.dictionaries
        q = sa.select(t).order_by(t.c.node, t.c.incarnation, t.c.dict_version)
        if node is not None:
            q = q.where(t.c.node == node)
        return [
            DictionaryRow(r.node, r.incarnation, r.dict_version, tuple(r.series), r.inventory, r.role)
            for r in self._rows(q)
        ]

    def frames(self, node: str, since: float, until: float, kinds: tuple[int, ...] = (2,)) -> list[FrameRow]:
        """Frames of ``node`` with ``since <= ts <= until`` and a kind in
        ``kinds`` (default DATA), oldest first."""
        t = S.frames
        q = (
            sa.select(t)
            .where(t.c.node == node, t.c.ts >= since, t.c.ts <= until, t.c.kind.in_(kinds))
            .order_by(t.c.ts, t.c.incarnation, t.c.seq)
        )
        return [FrameRow(*r) for r in self._rows(q)]

    def nodes(self) -> list[NodeRow]:
        """Every node of the live view, by name."""
        return [
            NodeRow(r.name, r.path, r.parent, r.role, r.state, r.since, r.incarnation, r.last_seen, r.inventory)
            for r in self._rows(sa.select(S.nodes).order_by(S.nodes.c.name))
        ]

    def events(
        self,
        subject: str | None = None,
        type: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[EventRow]:
        """Stored events, newest first, optionally of one subject / type and
        with ``ts >= since``; at most ``limit``."""
        t = S.events
        q = sa.select(t).order_by(
            t.c.ts.desc(), t.c.source, t.c.source_incarnation.desc(), t.c.source_seq.desc()
        )
        if subject is not None:
            q = q.where(t.c.subject == subject)
        if type is not None:
            q = q.where(t.c.type == type)
        if since is not None:
            q = q.where(t.c.ts >= since)
        q = q.limit(max(0, int(limit)))
        return [
            EventRow(r.ts, r.subject, r.type, r.message, r.attrs, r.source, r.source_incarnation, r.source_seq)
            for r in self._rows(q)
        ]

    def jobs(self, **filters: Any) -> list[dict]:
        """Stored batch jobs, newest first (``jobs.select``'s filters)."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return jobs.select(conn, **filters)

    def job(self, job_id: str, cluster: str | None = None) -> list[dict]:
        """The stored rows of one job id (one per cluster that has it)."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return jobs.one(conn, job_id, cluster)

    def core_hours(self, since: float, until: float, by: str, cluster: str | None = None,
                   now: float | None = None) -> list[dict]:
        """Core-hours per user or account over a period (``jobs.core_hours``)."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return jobs.core_hours(conn, since, until, by, cluster, now)

    def utilization(self, cluster: str, since: float, until: float, by: str, now: float | None = None) -> dict:
        """A cluster's utilization, occupancy and power-on rate per day or month."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return utilization.report(conn, cluster, since, until, by, self.history.config.retention, now)

    def sched_clusters(self) -> list[str]:
        """The clusters with stored scheduler figures or jobs."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return utilization.clusters(conn)

    def alerts_sql(self, work: Callable[[sa.Connection, Callable[[sa.Table], Any]], Any], write: bool = False) -> Any:
        """Run ``work(conn, insert)`` on the alert tables (``storage/alerts.py``), in
        one transaction when it writes; on SQLite a write takes its turn with the
        others of this process, as every writer here does."""
        self._ensure_schema()
        with (self._one_writer() if write else contextlib.nullcontext()), Translate(), \
                (self.engine.begin() if write else self.engine.connect()) as conn:
            return work(conn, self._insert)

    def state_history(self, node: str, since: float | None = None) -> list[StateRow]:
        """The states ``node`` has been in, oldest first."""
        t = S.state_history
        q = sa.select(t).where(t.c.node == node).order_by(t.c.since)
        if since is not None:
            q = q.where(t.c.since >= since)
        return [StateRow(r.node, r.since, r.state, r.incarnation) for r in self._rows(q)]

    def stats(self) -> dict:
        """Row counts per table (``<table>_rows``), ``db_bytes`` and ``backend``."""
        self._ensure_schema()
        out: dict[str, Any] = {"backend": self.backend, "schema_version": self.schema_version}
        with Translate(), self.engine.connect() as conn:
            for table in S.ALL_TABLES:
                out[f"{table.name}_rows"] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            out["db_bytes"] = self._db_bytes(conn)
        return out

    def _db_bytes(self, conn: sa.Connection) -> int:
        if self.backend == "postgresql":
            names = [t.name for t in S.metadata.sorted_tables]
            q = sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relname = ANY(:names) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)"
            )
            return int(conn.execute(q, {"names": names}).scalar_one())
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        wal = f"{self.engine.url.database.removeprefix('file:')}-wal"
        return pages * size + (os.path.getsize(wal) if os.path.exists(wal) else 0)

    # --- history: rollups, compaction, retention ------------------------------

    def flush(self) -> None:
        """Write every open rollup bucket now (at shutdown; in tests)."""
        self._ensure_schema()
        self.history.due(time.time(), force=True)
        self._write_rollups(math.inf)

    def _write_rollups(self, budget: float) -> int:
        """Write drained rollup rows in slices until none are left or
        ``budget`` seconds have passed; returns rows written."""
        h = self.history
        written, t0 = 0, time.perf_counter()
        while h.pending and time.perf_counter() - t0 < budget:
            with self._one_writer(), Translate(), self.engine.begin() as conn:
                taken = h.write_slice_safely(conn, self.copy_threshold, h.config.maintain_slice_rows)
            h.slice_committed(taken)
            written += taken
        return written

    def maintain(self, now: float | None = None) -> dict[str, int]:
        """Periodic work, to be called from the writer thread (every ~10 s):
        drain closed rollup buckets and write them (for at most
        ``maintain_budget`` seconds; the rest goes with later calls and
        writes), compact complete windows of raw frames into chunks (unless
        the compactor thread runs), apply retention (hourly). Raises
        ``StoreUnavailable`` like ``write``."""
        self._ensure_schema()
        self.file_guard.check()
        now = time.time() if now is None else now
        cfg = self.history.config
        t0 = time.perf_counter()
        self.history.due(time.time())
        # the drain counts against the budget: together they bound the call
        rolled = self._write_rollups(cfg.maintain_budget - (time.perf_counter() - t0))
        compacted = 0
        if not self.compactor.running:
            compacted = self.compactor.run_pass(now, cfg.compact_budget, cfg.compact_nodes_per_call)
        with self._one_writer(), Translate():
            expired = self.history.expire(self.engine, now)
            with self.engine.begin() as conn:
                log_merged = self.logs.compact(conn, now)
            if now - self._logs_expired_at >= self.history.config.retention_every:
                self._logs_expired_at = now
                with self.engine.begin() as conn:
                    expired.update(self.logs.expire(conn, now, self.log_retention))
        self.rollup_rows_written += rolled
        return {"frames_compacted": compacted, "log_chunks_merged": log_merged,
                **{f"{k}_expired": v for k, v in expired.items()}}

    def _one_writer(self):
        """On SQLite, writes take turns with the compactor's (root/storage/compactor.py)."""
        return self.history.frames_lock if self.compactor.one_writer else contextlib.nullcontext()

    def compact(self, now: float | None = None) -> int:
        """Compact every complete window now; returns frames compacted."""
        self._ensure_schema()
        return self.compactor.run_pass(time.time() if now is None else now)

    def start_compactor(self, every: float = 10.0) -> None:
        """Compact from a thread of its own from now on, beside ``write``
        (``maintain`` then leaves compaction to it), decoding and encoding in
        a process of its own (root/storage/planner.py); ``close`` stops both."""
        self.compactor.start(every)

    def expire(self, now: float | None = None) -> dict[str, int]:
        """Apply retention now; returns rows deleted per table."""
        self._ensure_schema()
        with self._one_writer(), Translate():
            return self.history.expire(self.engine, time.time() if now is None else now, force=True)

    def compact_logs(self, now: float | None = None) -> int:
        """Merge the small log chunks of closed windows now (``maintain`` does it too)."""
        self._ensure_schema()
        total = 0
        with self._one_writer(), Translate():
            while True:
                with self.engine.begin() as conn:
                    n = self.logs.compact(conn, time.time() if now is None else now, 1000)
                total += n
                if not n:
                    return total

    def log_lines(self, **query: Any) -> dict[str, Any]:
        """Stored log lines (``LogStore.search``'s arguments)."""
        self._ensure_schema()
        with Translate(), self.engine.connect() as conn:
            return self.logs.search(conn, **query)

    def series(self, node: str, name: str, since: float, until: float, step: float | None = None,
               tier: str | None = None) -> dict[str, Any]:
        """Points of one series of one node in ``[since, until]``.

        The tier ("raw", "1m", "30m", "2h", "1d") is chosen from the range and
        ``step`` unless given. Returns ``{"tier", "step", "points"}``: raw points
        are ``[ts, value]``; rollup points are dicts with ``ts`` (bucket start),
        ``min``, ``max``, ``sum``, ``count``, ``avg``. Rollups lag ingest by up to
        ``flush_seconds`` (1 min tier) / ``coarse_flush_seconds``.
        """
        self._ensure_schema()
        with Translate():
            return self.history.series(self.engine.connect, node, name, since, until, step, tier, time.time())

    def summary(self, name: str, since: float, until: float, by: str = "cluster",
                tier: str | None = None) -> dict[str, Any]:
        """One series across nodes from the rollups, ``by`` "cluster" or
        "aggregator": ``{"tier", "step", "by", "groups": {entity: {min, max,
        sum, count, avg, points}}}`` (the cluster's entity is "")."""
        if by not in ("cluster", "aggregator"):
            raise ValueError(f"summary by {by!r}: expected 'cluster' or 'aggregator'")
        self._ensure_schema()
        with Translate():
            return self.history.summary(self.engine.connect, name, since, until, by, tier, time.time())

    def close(self) -> bool:
        """Stop the compactor, write open rollup buckets if the database is
        there, then release every pooled connection. False when the buckets
        could not be written (they are lost: the caller reports it)."""
        self.compactor.stop()
        flushed = True
        try:
            if self.schema_version:
                self.flush()
        except StoreError as exc:
            flushed = False
            log.error("open rollup buckets could not be written at close (%s): rollups of the last "
                      "minutes lack samples; raw data is complete", exc)
        self.compactor.write_engine.dispose()
        self.engine.dispose()
        return flushed


_SQLITE_INSERT_FRAMES = (
    "INSERT INTO frames (node, incarnation, seq, ts, kind, dict_version, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _sqlite_insert_all_new(conn: sa.Connection, frames: list[FrameRow]) -> bool:
    """The common case on SQLite, fast: insert with the driver's executemany
    and keep the rows if every one was new. Otherwise (a replay) undo and
    return False, so the caller inserts with RETURNING to learn which were."""
    raw = conn.connection.driver_connection
    before = raw.total_changes
    raw.execute("SAVEPOINT frames_in")
    raw.executemany(_SQLITE_INSERT_FRAMES, [
        (f.node, f.incarnation, f.seq, f.ts, int(f.kind), f.dict_version, f.payload) for f in frames
    ])
    if raw.total_changes - before == len(frames):
        raw.execute("RELEASE frames_in")
        return True
    raw.execute("ROLLBACK TO frames_in")
    raw.execute("RELEASE frames_in")
    return False
