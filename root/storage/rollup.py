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
import threading
from dataclasses import dataclass, field

import numpy as np

#: (name, bucket width in seconds), finest first.
TIERS: tuple[tuple[str, int], ...] = (("1m", 60), ("30m", 1800), ("2h", 7200), ("1d", 86400))
TIER_WIDTH = dict(TIERS)
SCOPES = ("node", "aggregator", "cluster")


#: A rollup sum saturates at +-this (its error term then 0): finite values such as
#: 1e308 twice would overflow to inf, which SQL stores as NULL (or NaN) and then
#: refuses, and every later write carrying rollups would fail with it.
SUM_LIMIT = 1e308


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's error-free addition: a + b == s + e exactly, but that a sum past
    +-``SUM_LIMIT`` saturates there (with e = 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        s = a + b
        bp = s - a
        e = (a - (s - bp)) + (b - bp)
    over = np.abs(s) > SUM_LIMIT  # inf included; a and b are finite, so s is never NaN
    if over.any():
        s = np.where(over, np.copysign(SUM_LIMIT, s), s)
        e = np.where(over, 0.0, e)
    return s, e


def _exact_sum(parts: list[float]) -> tuple[float, float]:
    """(sum, its rounding error) of ``parts`` by ``math.fsum``, saturating at
    +-``SUM_LIMIT`` (fsum itself raises on an intermediate overflow)."""
    scaled = math.fsum(p * 2.0**-64 for p in parts)  # cannot overflow: tells a saturated sum
    if abs(scaled) > SUM_LIMIT * 2.0**-64:
        return math.copysign(SUM_LIMIT, scaled), 0.0
    total = math.fsum(parts)
    return total, math.fsum(parts + [-total])


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

    def add(self, keys: np.ndarray, values: np.ndarray, rank: np.ndarray | None = None) -> None:
        """Add samples; a key may repeat. ``rank`` (optional) numbers the
        repeats: samples of equal rank should have distinct keys (one frame
        per rank); if they do not, they are ranked here."""
        if rank is None or not len(rank):
            self._add_ranked(keys, values)
            return
        top = int(rank.max())
        for r in range(top + 1):
            k, v = (keys, values) if top == 0 else (keys[rank == r], values[rank == r])
            if len(k) and np.bincount(k).max() > 1:
                self._add_ranked(k, v)
            else:
                self._add_unique(k, v)

    def _add_ranked(self, keys: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
        rank = np.arange(len(keys)) - start
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            sel = rank == r
            self._add_unique(keys[sel], values[sel])

    def _add_unique(self, k: np.ndarray, v: np.ndarray) -> None:
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

    def head(self, n: int) -> "RollupRows":
        """The first ``n`` rows."""
        return self if n >= len(self) else RollupRows(self.tier, *(c[:n] for c in self._columns()))

    def tail(self, n: int) -> "RollupRows":
        """Every row after the first ``n``."""
        return RollupRows(self.tier, *(c[n:] for c in self._columns()))

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.key, self.bucket, self.min, self.max, self.sum, self.sum_c, self.count)


class Rollups:
    """The in-memory side of the rollups: key ids, open buckets, draining.

    Not thread-safe, but for ``key``: the writer thread owns it and the
    compactor thread only looks keys up (and may make one).
    """

    def __init__(self) -> None:
        self._key_lock = threading.Lock()
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
            with self._key_lock:
                got = self.keys.get(name)
                if got is None:
                    got = len(self.key_names)
                    self.key_names.append(name)
                    self.new_keys.append((got, scope, entity, series))
                    self.keys[name] = got
        return got

    def node_keys(self, node: str, series: tuple[str, ...]) -> np.ndarray:
        """Key ids of a node's dictionary, position by position."""
        return np.array([self.key("node", node, s) for s in series], dtype=np.int64)

    def add(self, keys: np.ndarray, ts: np.ndarray, values: np.ndarray, rank: np.ndarray | None = None) -> None:
        """Add samples to the 1-min tier; ``rank`` as in ``Buckets.add``. NaN
        values are missing and skipped, and so are infinities (a sum of +inf
        and -inf is NaN, which SQL would store as NULL and then refuse)."""
        ok = np.isfinite(values)
        if not ok.all():
            keys, ts, values = keys[ok], ts[ok], values[ok]
            rank = None if rank is None else rank[ok]
        if not len(keys):
            return
        buckets = (np.floor(ts / 60.0) * 60).astype(np.int64)
        size = len(self.key_names)
        first = int(buckets[0])
        if np.all(buckets == first):  # the usual case: one batch, one minute
            groups = [(first, slice(None))]
        else:
            groups = [(int(b), buckets == b) for b in np.unique(buckets)]
        for b, sel in groups:
            acc = self.open["1m"].get(b)
            if acc is None:
                acc = self.open["1m"][b] = Buckets(size)
            acc.grow(size)
            acc.add(keys[sel], values[sel], None if rank is None else rank[sel])

    def drain(self, tiers: tuple[str, ...], parent_of: dict[str, str],
              closed_before: float = math.inf, limit: int | None = None) -> list[RollupRows]:
        """Hand over the open buckets of ``tiers`` (finest first), folding the
        1-min buckets into the coarser tiers first; ``parent_of`` maps a node to
        its aggregator for the aggregator scope.

        Only 1-min buckets that end by ``closed_before`` are handed over (and
        folded), so a minute still receiving samples is written once, whole;
        coarser tiers hand over their partial buckets (merged in SQL).
        ``limit``: at most this many 1-min buckets, the oldest.
        """
        out = []
        if "1m" in tiers:
            closed = sorted(b for b in self.open["1m"] if b + 60 <= closed_before)[:limit]
            done = {b: self.open["1m"][b] for b in closed}
            for start, acc in done.items():
                del self.open["1m"][start]
                for name, width in TIERS[1:]:
                    b = start - start % width
                    coarse = self.open[name].get(b)
                    if coarse is None:
                        coarse = self.open[name][b] = Buckets(acc.size)
                    coarse.fold(acc)
            out += [self._rows("1m", start, acc, parent_of) for start, acc in sorted(done.items())]
        for name in tiers:
            if name == "1m":
                continue
            buckets, self.open[name] = self.open[name], {}
            for start, acc in sorted(buckets.items()):
                out.append(self._rows(name, start, acc, parent_of))
        return out

    def _groups(self, k: np.ndarray, parent_of: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """For node keys ``k``: (group of each member, group key ids), the
        groups being every (aggregator, series) and every (cluster, series)."""
        names = [self.key_names[key] for key in k.tolist()]
        node_ids: dict[str, int] = {}
        series_ids: dict[str, int] = {}
        node_of = np.fromiter((node_ids.setdefault(n, len(node_ids)) for _, n, _ in names), np.int64, len(k))
        series_of = np.fromiter((series_ids.setdefault(s, len(series_ids)) for _, _, s in names), np.int64, len(k))
        parents: dict[str, int] = {}
        parent_of_node = np.array([parents.setdefault(parent_of.get(n, ""), len(parents)) for n in node_ids],
                                  dtype=np.int64)
        parent_names, series_names = list(parents), list(series_ids)
        ns = len(series_ids)
        # aggregator groups first (ids parent * ns + series), then cluster groups
        agg_combo = parent_of_node[node_of] * ns + series_of
        combos, agg_group = np.unique(agg_combo, return_inverse=True)
        agg_keys = [self.key("aggregator", parent_names[c // ns], series_names[c % ns]) for c in combos.tolist()]
        cluster_series = np.unique(series_of)
        cluster_index = np.searchsorted(cluster_series, series_of)
        cluster_keys = [self.key("cluster", "", series_names[s]) for s in cluster_series.tolist()]
        member_group = np.concatenate((agg_group, cluster_index + len(agg_keys)))
        return member_group, np.array(agg_keys + cluster_keys, dtype=np.int64)

    def _rows(self, tier: str, start: int, acc: Buckets, parent_of: dict[str, str]) -> RollupRows:
        k = np.flatnonzero(acc.n)
        if not len(k):
            empty = np.zeros(0)
            return RollupRows(tier, k.astype(np.int64), k.astype(np.int64), empty, empty, empty, empty,
                              k.astype(np.int64))
        member_group, gk = self._groups(k, parent_of)
        members = np.concatenate((k, k))
        order = np.argsort(member_group, kind="stable")
        sorted_group, sorted_members = member_group[order], members[order]
        cuts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
        g_mn = np.minimum.reduceat(acc.mn[sorted_members], cuts) if len(cuts) else np.zeros(0)
        g_mx = np.maximum.reduceat(acc.mx[sorted_members], cuts) if len(cuts) else np.zeros(0)
        g_n = np.add.reduceat(acc.n[sorted_members], cuts) if len(cuts) else np.zeros(0, dtype=np.int64)
        # Exact group sums: fsum over each group's hi and lo parts (groups are
        # few: aggregators x series, plus one per series).
        hi, lo = acc.hi[sorted_members].tolist(), acc.lo[sorted_members].tolist()
        bounds = cuts.tolist() + [len(sorted_members)]
        g_hi, g_lo = [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            total, err = _exact_sum(hi[a:b] + lo[a:b])
            g_hi.append(total)
            g_lo.append(err)
        keys = np.concatenate((k, gk)).astype(np.int64)
        s, e = _two_sum(np.concatenate((acc.hi[k], g_hi)), np.concatenate((acc.lo[k], g_lo)))
        return RollupRows(
            tier,
            keys,
            np.full(len(keys), start, dtype=np.int64),
            np.concatenate((acc.mn[k], g_mn)),
            np.concatenate((acc.mx[k], g_mx)),
            s,
            e,
            np.concatenate((acc.n[k], g_n)).astype(np.int64),
        )
