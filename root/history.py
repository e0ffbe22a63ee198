"""What happens to frames after ``Store.write``: rollups fed from the decoded
values, compaction into chunks, retention, and the reads over all of it.

One ``History`` belongs to one ``Store``; its state (open rollup buckets,
compacted ranges, dictionary names, each node's aggregator) lives in memory
and is owned by the writer thread. Reads take only the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from clumon.proto.frames import Kind

from . import compaction, retention, rollup_sql
from . import schema as S
from .rollup import TIER_WIDTH, TIERS, Rollups, RollupRows


@dataclass(frozen=True)
class HistoryConfig:
    """Timings and horizons (seconds)."""

    flush_seconds: float = 60.0  # 1-min rollup buckets reach SQL at least this often
    coarse_flush_seconds: float = 600.0  # coarser tiers' partial buckets
    raw_window: float = 300.0  # a chunk window is compacted this long after it ends
    compact_nodes_per_call: int = 200  # bounds the work of one maintain()
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
        self.raw_oldest: dict[str, float] = {}
        self.pending: list[RollupRows] = []
        self.pending_keys = 0
        self.last_flush = {"1m": time.time(), "coarse": time.time()}
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
        skipped by the database itself)."""
        return [f for f in frames if not self.ranges.contains(f.node, f.incarnation, f.seq)]

    def due(self, now: float, force: bool = False) -> None:
        """Drain rollup buckets into ``pending`` when their flush is due."""
        tiers: tuple[str, ...] = ()
        if force or now - self.last_flush["coarse"] >= self.config.coarse_flush_seconds:
            tiers = tuple(name for name, _ in TIERS)
            self.last_flush["coarse"] = self.last_flush["1m"] = now
        elif now - self.last_flush["1m"] >= self.config.flush_seconds:
            tiers = ("1m",)
            self.last_flush["1m"] = now
        if tiers:
            self.pending += [r for r in self.rollups.drain(tiers, self.parent_of) if len(r)]
            self.pending_keys = len(self.rollups.new_keys)

    def write_pending(self, conn: sa.Connection, copy_threshold: int) -> None:
        """Inside the write transaction: merge drained buckets into SQL."""
        if self.pending:
            rollup_sql.write_keys(conn, self.rollups.new_keys[: self.pending_keys])
            rollup_sql.write_rows(conn, self.pending, copy_threshold)

    def committed(self, conn_factory, inserted: list) -> None:
        """After commit: forget written buckets, feed inserted DATA to rollups."""
        if self.pending:
            del self.rollups.new_keys[: self.pending_keys]
            self.pending, self.pending_keys = [], 0
        keys, ts, values = [], [], []
        for f in inserted:
            self.raw_oldest[f.node] = min(self.raw_oldest.get(f.node, f.ts), f.ts)
            if f.kind != int(Kind.DATA):
                continue
            decoded = compaction.decode_data(f.payload)
            if decoded is None:
                continue
            dv, index, vals = decoded
            kmap = self._keys_of(conn_factory, f.node, f.incarnation, dv)
            if kmap is None:
                continue
            ok = index < len(kmap)
            keys.append(kmap[index[ok]])
            values.append(vals[ok])
            ts.append(np.full(int(ok.sum()), f.ts))
        if keys:
            self.rollups.add(np.concatenate(keys), np.concatenate(ts), np.concatenate(values))

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

    def compact(self, engine: sa.Engine, now: float) -> int:
        """Compact complete windows of up to ``compact_nodes_per_call`` nodes."""
        width = compaction.CHUNK_SECONDS
        cutoff = (now - self.config.raw_window) // width * width
        todo = [n for n, oldest in self.raw_oldest.items() if oldest < cutoff]
        done = 0
        for node in todo[: self.config.compact_nodes_per_call]:
            with engine.begin() as conn:
                names = lambda n, i, v: self.series_names(lambda: _Reuse(conn), n, i, v)  # noqa: E731
                done += compaction.compact_node(conn, node, cutoff, names, self.ranges)
                oldest = conn.execute(sa.select(sa.func.min(S.frames.c.ts)).where(S.frames.c.node == node)).scalar()
            if oldest is None:
                self.raw_oldest.pop(node, None)
            else:
                self.raw_oldest[node] = oldest
        return done

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
