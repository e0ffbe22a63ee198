"""Rollups computed at ingest: min/max/sum/count per bucket for the tiers of
DESIGN.md (1 min, 30 min, 2 h, 1 day), per node series, per aggregator and for
the whole cluster.

Samples land in an in-memory 1-minute accumulator (dense numpy arrays indexed by
a rollup key id). ``Rollups.drain`` hands the 1-minute buckets over and folds
them into the coarser tiers, which are drained less often; a drained bucket is
merged into its table row (``INSERT ... ON CONFLICT DO UPDATE``), so late
samples, replays after an outage and restarts only ever add. Aggregator and
cluster rows are computed from the node rows at drain time. Sums are kept as
double-doubles (``sum`` plus ``sum_c``, the rounding error) so that any order of
arrival gives the same total as ``math.fsum`` to ~1e-16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: (name, bucket width in seconds), finest first.
TIERS: tuple[tuple[str, int], ...] = (("1m", 60), ("30m", 1800), ("2h", 7200), ("1d", 86400))
TIER_WIDTH = dict(TIERS)
SCOPES = ("node", "aggregator", "cluster")


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's error-free addition: a + b == s + e exactly."""
    s = a + b
    bp = s - a
    e = (a - (s - bp)) + (b - bp)
    return s, e


@dataclass(slots=True)
class Buckets:
    """Accumulators of one tier and one bucket start, indexed by key id."""

    size: int
    mn: np.ndarray = field(init=False)
    mx: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)
    lo: np.ndarray = field(init=False)
    n: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mn = np.full(self.size, np.inf)
        self.mx = np.full(self.size, -np.inf)
        self.hi = np.zeros(self.size)
        self.lo = np.zeros(self.size)
        self.n = np.zeros(self.size, dtype=np.int64)

    def grow(self, size: int) -> None:
        if size <= self.size:
            return
        extra = size - self.size
        self.mn = np.concatenate((self.mn, np.full(extra, np.inf)))
        self.mx = np.concatenate((self.mx, np.full(extra, -np.inf)))
        self.hi = np.concatenate((self.hi, np.zeros(extra)))
        self.lo = np.concatenate((self.lo, np.zeros(extra)))
        self.n = np.concatenate((self.n, np.zeros(extra, dtype=np.int64)))
        self.size = size

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add samples; a key may repeat."""
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
        rank = np.arange(len(keys)) - start
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            sel = rank == r
            k, v = keys[sel], values[sel]  # unique keys within one rank
            self.mn[k] = np.minimum(self.mn[k], v)
            self.mx[k] = np.maximum(self.mx[k], v)
            s, e = _two_sum(self.hi[k], v)
            self.hi[k] = s
            self.lo[k] += e
            self.n[k] += 1

    def fold(self, other: "Buckets") -> None:
        """Merge another bucket of the same keys into this one (no repeats)."""
        self.grow(other.size)
        k = np.flatnonzero(other.n)
        self.mn[k] = np.minimum(self.mn[k], other.mn[k])
        self.mx[k] = np.maximum(self.mx[k], other.mx[k])
        s, e = _two_sum(self.hi[k], other.hi[k])
        self.hi[k] = s
        self.lo[k] += e + other.lo[k]
        self.n[k] += other.n[k]


@dataclass(frozen=True, slots=True)
class RollupRows:
    """Drained rows of one tier, column-wise (one entry per key and bucket)."""

    tier: str
    key: np.ndarray
    bucket: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    sum_c: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.key)


class Rollups:
    """The in-memory side of the rollups: key ids, open buckets, draining.

    Not thread-safe: the writer thread owns it.
    """

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str, str], int] = {}
        self.key_names: list[tuple[str, str, str]] = []
        self.new_keys: list[tuple[int, str, str, str]] = []
        self.open: dict[str, dict[int, Buckets]] = {name: {} for name, _ in TIERS}

    def load_keys(self, rows) -> None:
        """Known keys ``(id, scope, entity, series)`` from the database."""
        for key, scope, entity, series in sorted(rows):
            while len(self.key_names) <= key:
                self.key_names.append(("", "", ""))
            self.key_names[key] = (scope, entity, series)
            self.keys[(scope, entity, series)] = key

    def key(self, scope: str, entity: str, series: str) -> int:
        """The id of a rollup key, new ones remembered for ``new_keys``."""
        name = (scope, entity, series)
        got = self.keys.get(name)
        if got is None:
            got = self.keys[name] = len(self.key_names)
            self.key_names.append(name)
            self.new_keys.append((got, scope, entity, series))
        return got

    def node_keys(self, node: str, series: tuple[str, ...]) -> np.ndarray:
        """Key ids of a node's dictionary, position by position."""
        return np.array([self.key("node", node, s) for s in series], dtype=np.int64)

    def add(self, keys: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        """Add samples (NaN values are missing and skipped) to the 1-min tier."""
        ok = ~np.isnan(values)
        keys, ts, values = keys[ok], ts[ok], values[ok]
        if not len(keys):
            return
        buckets = (np.floor(ts / 60.0) * 60).astype(np.int64)
        size = len(self.key_names)
        for b in np.unique(buckets):
            sel = buckets == b
            acc = self.open["1m"].get(int(b))
            if acc is None:
                acc = self.open["1m"][int(b)] = Buckets(size)
            acc.grow(size)
            acc.add(keys[sel], values[sel])

    def drain(self, tiers: tuple[str, ...], parent_of: dict[str, str]) -> list[RollupRows]:
        """Hand over every open bucket of ``tiers`` (finest first), folding the
        1-min buckets into the coarser tiers first; ``parent_of`` maps a node to
        its aggregator for the aggregator scope."""
        out = []
        if "1m" in tiers:
            for start, acc in self.open["1m"].items():
                for name, width in TIERS[1:]:
                    b = start - start % width
                    coarse = self.open[name].get(b)
                    if coarse is None:
                        coarse = self.open[name][b] = Buckets(acc.size)
                    coarse.fold(acc)
        for name in tiers:
            buckets, self.open[name] = self.open[name], {}
            for start, acc in sorted(buckets.items()):
                out.append(self._rows(name, start, acc, parent_of))
        return out

    def _rows(self, tier: str, start: int, acc: Buckets, parent_of: dict[str, str]) -> RollupRows:
        k = np.flatnonzero(acc.n)
        groups: dict[int, list[int]] = {}
        for key in k.tolist():
            _, node, series = self.key_names[key]
            for scope, entity in (("aggregator", parent_of.get(node, "")), ("cluster", "")):
                groups.setdefault(self.key(scope, entity, series), []).append(key)
        gk = np.array(list(groups), dtype=np.int64)
        mn, mx, hi, lo, n = [acc.mn[k]], [acc.mx[k]], [acc.hi[k]], [acc.lo[k]], [acc.n[k]]
        for members in groups.values():
            m = np.array(members)
            total = math.fsum(np.concatenate((acc.hi[m], acc.lo[m])).tolist())
            rest = math.fsum(np.concatenate((acc.hi[m], acc.lo[m], [-total])).tolist())
            mn.append([acc.mn[m].min()])
            mx.append([acc.mx[m].max()])
            hi.append([total])
            lo.append([rest])
            n.append([acc.n[m].sum()])
        keys = np.concatenate((k, gk)).astype(np.int64)
        hi_all, lo_all = np.concatenate(hi), np.concatenate(lo)
        s, e = _two_sum(hi_all, lo_all)  # renormalise: sum carries the value, sum_c the rest
        return RollupRows(
            tier,
            keys,
            np.full(len(keys), start, dtype=np.int64),
            np.concatenate(mn),
            np.concatenate(mx),
            s,
            e,
            np.concatenate(n).astype(np.int64),
        )
