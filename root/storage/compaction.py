"""Compaction: a node's stored DATA frames, once their window is complete, are
rewritten into one chunk per (node, series, window) and deleted; reads of raw
points combine chunks with the frames not yet compacted.

The seq ranges of compacted frames are kept (table ``compacted``) so that a
frame replayed after its row was deleted is still recognised as stored.
"""

from __future__ import annotations

import bisect
import struct
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sqlalchemy as sa

from clumon.proto import codec
from clumon.proto.frames import Kind, merge_ranges, seq_ranges

from . import chunks
from . import schema as S

#: Chunks cover aligned windows of this many seconds.
CHUNK_SECONDS = 1800
_F64, _U16 = struct.Struct("<d"), struct.Struct("<H")

Names = Callable[[str, int, int], "tuple[str, ...] | None"]


def decode_data(payload: bytes) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(dict_version, series positions, values) of a stored DATA frame."""
    try:
        body = codec.decode(payload).body
    except codec.DecodeError:
        return None
    return body.dict_version, body.index_array(), body.value_array()


class Ranges:
    """Compacted seq ranges per (node, incarnation), in memory and in SQL."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def load(self, conn: sa.Connection) -> None:
        t = S.compacted
        self.by_key.clear()
        for r in conn.execute(sa.select(t.c.node, t.c.incarnation, t.c.lo, t.c.hi).order_by(t.c.lo)):
            self.by_key.setdefault((r.node, r.incarnation), []).append((r.lo, r.hi))

    def contains(self, node: str, incarnation: int, seq: int) -> bool:
        ranges = self.by_key.get((node, incarnation))
        if not ranges:
            return False
        i = bisect.bisect_right(ranges, (seq, float("inf"))) - 1
        return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]

    def add(self, conn: sa.Connection, node: str, incarnation: int, seqs: list[int], last_ts: float) -> None:
        old = self.by_key.get((node, incarnation), [])
        merged = merge_ranges(old + list(seq_ranges(seqs)))
        t = S.compacted
        conn.execute(t.delete().where(t.c.node == node, t.c.incarnation == incarnation))
        conn.execute(
            t.insert(),
            [{"node": node, "incarnation": incarnation, "lo": lo, "hi": hi, "last_ts": last_ts} for lo, hi in merged],
        )
        self.by_key[(node, incarnation)] = list(merged)


def _points_of(frames, names: Names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per series name: (ts, values) arrays from DATA frame rows, NaN dropped."""
    names_at, pos_at, ts_at, val_at = [], [], [], []
    for f in frames:
        decoded = decode_data(f.payload)
        if decoded is None:
            continue
        dv, index, values = decoded
        series = names(f.node, f.incarnation, dv)
        if series is None:
            continue
        names_at.append(series)
        pos_at.append(index)
        ts_at.append(np.full(len(index), f.ts))
        val_at.append(values)
    if not pos_at:
        return {}
    # One id per distinct (dictionary, position): dictionaries are few, so
    # number them and offset the positions.
    dict_ids: dict[tuple[str, ...], int] = {}
    offsets = []
    for series in names_at:
        dict_ids.setdefault(series, len(dict_ids))
        offsets.append(dict_ids[series] * 65536)
    ids = np.concatenate([p + o for p, o in zip(pos_at, offsets)])
    ts, vals = np.concatenate(ts_at), np.concatenate(val_at)
    keep = ~np.isnan(vals)
    ids, ts, vals = ids[keep], ts[keep], vals[keep]
    order = np.argsort(ids, kind="stable")
    ids, ts, vals = ids[order], ts[order], vals[order]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    by_dict = {i: s for s, i in dict_ids.items()}
    out: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for chunk_ids, chunk_ts, chunk_vals in zip(np.split(ids, cuts), np.split(ts, cuts), np.split(vals, cuts)):
        series = by_dict[int(chunk_ids[0]) // 65536]
        pos = int(chunk_ids[0]) % 65536
        if pos < len(series):
            out[series[pos]][0].append(chunk_ts)
            out[series[pos]][1].append(chunk_vals)
    return {name: (np.concatenate(t), np.concatenate(v)) for name, (t, v) in out.items()}


def _one_series(frames, names: Names, series: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(ts, values) of one series from stored DATA frame rows, NaN dropped.

    The frames were validated when they arrived, so this reads their fields
    straight from msgpack (a frame that does not fit is skipped) and picks the
    one value it needs: a range read touches every frame of its hour.
    """
    where: dict[tuple[int, int], int | None] = {}
    ts_out, v_out = [], []
    for row in frames:
        try:
            _, _, _, _, _, _, (dv, values, index) = codec.unpack(row.payload)
        except (codec.DecodeError, TypeError, ValueError):
            continue
        pos = where.get((row.incarnation, dv), -1)
        if pos == -1:
            dictionary = names(row.node, row.incarnation, dv)
            pos = where[(row.incarnation, dv)] = (
                dictionary.index(series) if dictionary is not None and series in dictionary else None)
        if pos is None or type(values) is not bytes:
            continue
        if index is None:
            if 8 * pos + 8 > len(values):
                continue
            value = _F64.unpack_from(values, 8 * pos)[0]
        else:
            at = index.find(_U16.pack(pos)) if type(index) is bytes else -1
            while at >= 0 and at % 2:  # a match must start on a uint16 boundary
                at = index.find(_U16.pack(pos), at + 1)
            if at < 0 or 4 * at + 8 > len(values):
                continue
            value = _F64.unpack_from(values, 4 * at)[0]
        if value == value:  # NaN is missing
            ts_out.append(row.ts)
            v_out.append(value)
    if not ts_out:
        return None
    return np.array(ts_out), np.array(v_out)


def _merge(ts: np.ndarray, vs: np.ndarray, old: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    if old is not None:
        ots, ovs = chunks.decode(old)
        ts, vs = np.concatenate((ots, ts)), np.concatenate((ovs, vs))
    order = np.argsort(ts, kind="stable")
    ts, vs = ts[order], vs[order]
    keep = np.r_[ts[1:] != ts[:-1], True]  # one point per time: the last written
    return ts[keep], vs[keep]


KeyOf = Callable[[str, str], int]


@dataclass
class NodePlan:
    """What compacting one node's old frames will write: chunk rows (new ones
    and rewritten ones, for late frames; each names its ``series`` until
    ``assign_keys``) and the frames to retire (seqs per incarnation)."""

    node: str
    fresh: list[dict]
    rewritten: list[dict]
    seqs: dict[int, list[int]]
    last_ts: float

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.seqs.values())

    def assign_keys(self, key_of: KeyOf) -> list[tuple[int, str]]:
        """Give each chunk row its key, ``key_of(node, series)``; returns the
        (key, series) pairs used, by key."""
        used: dict[int, str] = {}
        for row in self.fresh + self.rewritten:
            series = row.pop("series")
            row["key"] = key = key_of(self.node, series)
            used[key] = series
        return sorted(used.items())


def plan_node(conn: sa.Connection, node: str, cutoff: float, names: Names) -> NodePlan | None:
    """Read ``node``'s frames older than ``cutoff`` and build its chunks (reads
    only, and no state but the database: it may run in another process)."""
    f = S.frames
    rows = list(conn.execute(sa.select(f).where(f.c.node == node, f.c.ts < cutoff)))
    if not rows:
        return None
    by_window: dict[int, list] = defaultdict(list)
    for r in rows:
        if r.kind == int(Kind.DATA):
            by_window[int(r.ts // CHUNK_SECONDS * CHUNK_SECONDS)].append(r)
    c, k = S.chunks, S.rollup_keys
    plan = NodePlan(node, [], [], defaultdict(list), max(r.ts for r in rows))
    for start, frames in by_window.items():
        # A chunk's key is in rollup_keys whenever the chunk is (they commit together).
        existing = dict(conn.execute(
            sa.select(k.c.series, c.c.data).join(k, k.c.key == c.c.key)
            .where(k.c.scope == "node", k.c.entity == node, c.c.start == start)
        ).all())
        for series, (ts, vs) in _points_of(frames, names).items():
            ts, vs = _merge(ts, vs, existing.get(series))
            row = {"series": series, "start": start, "first_ts": float(ts[0]),
                   "last_ts": float(ts[-1]), "points": len(ts), "data": chunks.encode(ts, vs)}
            (plan.rewritten if series in existing else plan.fresh).append(row)
    for r in rows:
        plan.seqs[r.incarnation].append(r.seq)
    return plan


def write_chunks(conn: sa.Connection, plan: NodePlan) -> None:
    """Insert the plan's new chunks and rewrite the ones late frames changed
    (after ``assign_keys``).

    Writing the same plan twice gives the same chunks (a later plan merges the
    frames again, one point per time), so this commits on its own, before the
    frames are retired."""
    c = S.chunks
    if plan.fresh:
        conn.execute(c.insert(), plan.fresh)
    for row in plan.rewritten:
        conn.execute(c.update().where(c.c.key == row["key"], c.c.start == row["start"]), row)


def retire_frames(conn: sa.Connection, plan: NodePlan, ranges: Ranges) -> None:
    """Delete the plan's frames and record their seq ranges as compacted (in
    the caller's transaction; ``ranges`` in memory changes with it, so the
    caller holds what keeps ``write`` from checking ranges meanwhile)."""
    f = S.frames
    for incarnation, s in plan.seqs.items():
        ranges.add(conn, plan.node, incarnation, s, plan.last_ts)
        for lo, hi in seq_ranges(s):
            conn.execute(f.delete().where(f.c.node == plan.node, f.c.incarnation == incarnation,
                                          f.c.seq.between(lo, hi)))


def raw_points(conn: sa.Connection, node: str, series: str, since: float, until: float, names: Names) -> list[list[float]]:
    """``[ts, value]`` of one series in ``[since, until]`` from chunks and frames."""
    c, f, k = S.chunks, S.frames, S.rollup_keys
    ts_parts, v_parts = [], []
    key = conn.execute(sa.select(k.c.key).where(k.c.scope == "node", k.c.entity == node,
                                                 k.c.series == series)).scalar()
    q = sa.select(c.c.data).where(c.c.key == key, c.c.start > since - CHUNK_SECONDS, c.c.start <= until)
    for (data,) in (conn.execute(q) if key is not None else ()):
        ts, vs = chunks.decode(data)
        ts_parts.append(ts)
        v_parts.append(vs)
    frames = conn.execute(
        sa.select(f.c.node, f.c.incarnation, f.c.ts, f.c.payload)
        .where(f.c.node == node, f.c.ts >= since, f.c.ts <= until, f.c.kind == int(Kind.DATA))
    )
    fresh = _one_series(frames, names, series)
    if fresh:
        ts_parts.append(fresh[0])
        v_parts.append(fresh[1])
    if not ts_parts:
        return []
    ts, vs = _merge(np.concatenate(ts_parts), np.concatenate(v_parts), None)
    sel = (ts >= since) & (ts <= until)
    return [[t, v] for t, v in zip(ts[sel].tolist(), vs[sel].tolist())]
