"""What happens to frames after ``Store.write``: rollups fed from the decoded
values, compaction into chunks, retention, and the reads over all of it.

One ``History`` belongs to one ``Store``; its state (open rollup buckets,
compacted ranges, dictionary names, each node's aggregator) lives in memory
and is owned by the writer thread, except what the compactor thread shares:
the compacted ranges and each node's oldest raw frame (under ``frames_lock``)
and new rollup keys (``Rollups.key`` locks). Reads take only the database.
"""

from __future__ import annotations

import threading
import time
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from clumon.proto.frames import Kind

from . import compaction, retention, rollup_sql
from . import schema as S
from .rollup import TIER_WIDTH, TIERS, Rollups, RollupRows

log = logging.getLogger("clumon.root.storage.history")


@dataclass(frozen=True)
class HistoryConfig:
    """Timings and horizons (seconds)."""

    flush_seconds: float = 60.0  # 1-min rollup buckets reach SQL at least this often
    coarse_flush_seconds: float = 600.0  # coarser tiers' partial buckets
    close_grace: float = 5.0  # a 1-min bucket is drained this long after it ends
    write_slice_rows: int = 5000  # drained rollup rows written along with each batch of frames
    maintain_slice_rows: int = 50_000  # ... and per transaction in maintain()
    maintain_budget: float = 2.0  # seconds one maintain() may spend writing rollups
    raw_window: float = 300.0  # a chunk window is compacted this long after it ends
    compact_nodes_per_call: int = 200  # bounds the work of one maintain() ...
    compact_budget: float = 2.0  # ... and so do these seconds (checked between nodes)
    retention_every: float = 3600.0
    retention: dict[str, float] = field(default_factory=lambda: dict(rollup_sql.RETENTION))


class History:
    """Rollups, compaction and retention around the raw tables."""

    def __init__(self, config: HistoryConfig | None = None):
        self.config = config or HistoryConfig()
        self.rollups = Rollups()
        self.ranges = compaction.Ranges()
        self.names: dict[tuple[str, int, int], tuple[str, ...]] = {}
        self.dict_keys: dict[tuple[str, int, int], np.ndarray] = {}
        self.parent_of: dict[str, str] = {}
        #: oldest frame time per node still in ``frames`` (a lower bound)
        self.raw_oldest: dict[str, float] = {}
        #: held by ``Store.write`` from ``new()`` to its commit and by the
        #: compactor while it retires frames: see ``root/storage/compactor.py``
        self.frames_lock = threading.Lock()
        self.pending: list[RollupRows] = []
        self._slice_keys = self._slice_rows = 0
        #: rollup rows the database refused (see ``write_slice_safely``)
        self.rows_rejected = 0
        self.last_flush = {"1m": time.time(), "coarse": time.time()}
        self._minutes_due = False  # closed minutes wait to be drained, one per due()
        self._coarse_due: list[str] = []  # coarse tiers to drain, one per due()
        self.last_retention = 0.0

    def load(self, conn: sa.Connection) -> None:
        """Read the state kept in SQL (at start, once the database answers)."""
        k = S.rollup_keys
        self.rollups.load_keys(conn.execute(sa.select(k.c.key, k.c.scope, k.c.entity, k.c.series)).all())
        self.ranges.load(conn)
        self.parent_of = dict(conn.execute(sa.select(S.nodes.c.name, S.nodes.c.parent)).all())
        f = S.frames
        self.raw_oldest = dict(conn.execute(sa.select(f.c.node, sa.func.min(f.c.ts)).group_by(f.c.node)).all())

    # --- around a write ------------------------------------------------------

    def learn(self, dictionaries, nodes) -> None:
        for d in dictionaries:
            self.names[(d.node, d.incarnation, d.dict_version)] = tuple(d.series)
        for n in nodes:
            self.parent_of[n.name] = n.parent

    def new(self, frames) -> list:
        """The frames not already compacted (those still in ``frames`` are
        skipped by the database itself); they count as raw until compacted.
        Call with ``frames_lock`` held until the frames are committed."""
        fresh = [f for f in frames if not self.ranges.contains(f.node, f.incarnation, f.seq)]
        oldest = self.raw_oldest
        for f in fresh:
            if f.ts < oldest.get(f.node, float("inf")):
                oldest[f.node] = f.ts
        return fresh

    def due(self, now: float, force: bool = False) -> None:
        """Drain rollup buckets into ``pending`` when their flush is due: closed
        1-min buckets every ``flush_seconds``, coarse partials every
        ``coarse_flush_seconds``. One piece per call -- the oldest closed
        minute, else one coarse tier: a minute of a 5,000-node site is ~1 M
        keys and ~0.7 s to drain, and maintain() must not hold ACKs for long.
        ``force`` drains everything."""
        cfg = self.config
        if force:
            tiers = tuple(name for name, _ in TIERS)
            self.pending += [r for r in self.rollups.drain(tiers, self.parent_of) if len(r)]
            self.last_flush["coarse"] = self.last_flush["1m"] = now
            self._coarse_due, self._minutes_due = [], False
            return
        if now - self.last_flush["coarse"] >= cfg.coarse_flush_seconds:
            self._coarse_due = [name for name, _ in TIERS[1:]]
            self._minutes_due = True
            self.last_flush["coarse"] = self.last_flush["1m"] = now
        elif now - self.last_flush["1m"] >= cfg.flush_seconds:
            self._minutes_due = True
            self.last_flush["1m"] = now
        if self._minutes_due:
            # closed minutes fold into the coarse tiers first
            drained = self.rollups.drain(("1m",), self.parent_of, now - cfg.close_grace, limit=1)
            self.pending += [r for r in drained if len(r)]
            if drained:
                return
            self._minutes_due = False
        if self._coarse_due:
            self.pending += [r for r in self.rollups.drain((self._coarse_due.pop(0),), self.parent_of) if len(r)]

    @property
    def pending_rows(self) -> int:
        return sum(len(r) for r in self.pending)

    def write_slice(self, conn: sa.Connection, copy_threshold: int, max_rows: int) -> int:
        """Inside a transaction: merge up to ``max_rows`` drained rows into SQL,
        new keys first and counted in ``max_rows`` (a new site makes a million
        at once: 5,000 nodes x 210 series). Returns the rollup rows taken; call
        ``slice_committed`` with it after commit."""
        self._slice_keys = self._slice_rows = 0
        if not self.pending:
            return 0
        self._slice_keys = min(len(self.rollups.new_keys), max_rows)
        rollup_sql.write_keys(conn, self.rollups.new_keys[: self._slice_keys])
        rows, taken = [], 0
        for r in self.pending:
            if taken >= max_rows - self._slice_keys:
                break
            part = r.head(max_rows - self._slice_keys - taken)
            rows.append(part)
            taken += len(part)
        self._slice_rows = taken
        rollup_sql.write_rows(conn, rows, copy_threshold)
        return taken

    def write_slice_safely(self, conn: sa.Connection, copy_threshold: int, max_rows: int) -> int:
        """``write_slice`` in a savepoint of ``conn``'s transaction: rows the database
        refuses are dropped and counted (``rows_rejected``), never taking the frames
        of that transaction (and of every later one) with them."""
        try:
            with conn.begin_nested():
                return self.write_slice(conn, copy_threshold, max_rows)
        except sa.exc.DBAPIError as exc:
            if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or exc.connection_invalidated:
                raise  # the database is away, not refusing these rows
            dropped = self.discard_slice()
            self.rows_rejected += dropped
            log.error("database refused %d rollup rows (dropped; raw frames are kept): %s",
                      dropped, str(getattr(exc, "orig", exc)).splitlines()[0])
            return 0

    def discard_slice(self) -> int:
        """Forget the rows and keys of a ``write_slice`` the database refused (so
        they do not fail every later write); returns the rows dropped."""
        taken, self._slice_rows = self._slice_rows, 0
        self.slice_committed(taken)
        return taken

    def slice_committed(self, taken: int) -> None:
        """After commit: forget the rows and keys the last ``write_slice`` wrote."""
        del self.rollups.new_keys[: self._slice_keys]
        self._slice_keys = 0
        rest = []
        for r in self.pending:
            if taken >= len(r):
                taken -= len(r)
                continue
            rest.append(r.tail(taken) if taken else r)
            taken = 0
        self.pending = rest

    def committed(self, conn_factory, inserted: list) -> None:
        """After commit: feed inserted DATA to the rollups."""
        keys, ts, values, ranks = [], [], [], []
        seen: dict[str, int] = {}
        for f in inserted:
            if f.kind != int(Kind.DATA):
                continue
            decoded = compaction.decode_data(f.payload)
            if decoded is None:
                continue
            dv, index, vals = decoded
            kmap = self._keys_of(conn_factory, f.node, f.incarnation, dv)
            if kmap is None:
                continue
            if len(index) and int(index.max()) >= len(kmap):
                ok = index < len(kmap)
                index, vals = index[ok], vals[ok]
            keys.append(kmap[index])
            values.append(vals)
            ts.append(np.full(len(index), f.ts))
            # The n-th frame of a node in this batch has rank n: within one
            # rank every key is distinct, so buckets add without sorting.
            rank = seen.get(f.node, 0)
            seen[f.node] = rank + 1
            ranks.append(np.full(len(index), rank, dtype=np.int32))
        if keys:
            self.rollups.add(np.concatenate(keys), np.concatenate(ts), np.concatenate(values),
                             np.concatenate(ranks))

    def _keys_of(self, conn_factory, node: str, incarnation: int, dv: int) -> np.ndarray | None:
        key = (node, incarnation, dv)
        got = self.dict_keys.get(key)
        if got is None:
            series = self.series_names(conn_factory, node, incarnation, dv)
            if series is None:
                return None
            got = self.dict_keys[key] = self.rollups.node_keys(node, series)
        return got

    def series_names(self, conn_factory, node: str, incarnation: int, dv: int) -> tuple[str, ...] | None:
        key = (node, incarnation, dv)
        if key not in self.names:
            d = S.dictionaries
            with conn_factory() as conn:
                row = conn.execute(
                    sa.select(d.c.series).where(d.c.node == node, d.c.incarnation == incarnation, d.c.dict_version == dv)
                ).first()
            if row is None:
                return None
            self.names[key] = tuple(row.series)
        return self.names[key]

    # --- maintenance ------------------------------------------------------------

    def expire(self, engine: sa.Engine, now: float, force: bool = False) -> dict[str, int]:
        if not force and now - self.last_retention < self.config.retention_every:
            return {}
        self.last_retention = now
        with engine.begin() as conn:
            return retention.apply(conn, now, self.config.retention)

    # --- reads ----------------------------------------------------------------------

    def series(self, conn_factory, node: str, name: str, since: float, until: float,
               step: float | None, tier: str | None, now: float) -> dict[str, Any]:
        tier = tier or rollup_sql.choose_tier(since, until, step, now, self.config.retention)
        with conn_factory() as conn:
            if tier == "raw":
                names = lambda n, i, v: self.series_names(lambda: _Reuse(conn), n, i, v)  # noqa: E731
                pts = compaction.raw_points(conn, node, name, since, until, names)
            else:
                pts = rollup_sql.points(conn, tier, "node", node, name, since, until)
        return {"tier": tier, "step": TIER_WIDTH.get(tier, 0), "points": pts}

    def summary(self, conn_factory, name: str, since: float, until: float, by: str,
                tier: str | None, now: float) -> dict[str, Any]:
        tier = tier or rollup_sql.choose_tier(since, until, None, now, self.config.retention)
        tier = "1m" if tier == "raw" else tier
        with conn_factory() as conn:
            groups = rollup_sql.summary(conn, tier, name, since, until, by)
        return {"tier": tier, "step": TIER_WIDTH[tier], "by": by, "groups": groups}


class _Reuse:
    """A context manager handing out an already open connection."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def __enter__(self) -> sa.Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        return None
