"""The root's storage at scale: ingest rate, bytes per sample, query times.

Prints one JSON line per backend (SQLite always; PostgreSQL when
``CLUMON_TEST_PG_URL`` or ``--pg-url`` names a server) with DESIGN.md's keys:

* ``samples_per_s``: values of DATA frames per second, sustained, from BATCH
  frames through the root's real path — ``codec.decode`` of each BATCH,
  ``proto.tree.walk``, ``root.ingest.Ingest.accept`` on an asyncio loop, and
  the writer thread's ``Store.write`` (insert, rollups) and ``Store.maintain``
  every ``--maintain-every`` s, until the last frame's ACK. ``nodes`` nodes
  behind ``aggregators`` aggregators, each aggregator sending one BATCH per
  second of its nodes' frames, fed as fast as the root takes them (at most
  ``commit_max_frames`` frames waiting). ``commit_p50_ms``/``commit_max_ms``
  time the writer's ``Store.write`` calls (large: the feed outruns the writer,
  so every batch is full), ``upkeep_max_ms`` its longest ``Store.maintain``:
  the longest time ACKs were held up by upkeep. Closed 1-minute rollup buckets
  are drained every 10 s here (60 s by default: the same rows, sooner); the
  coarse tiers' partial buckets, written every 10 min, are flushed once after
  the window (``coarse_flush_ms``, ``coarse_flush_rows``) and their share is
  charged: ``samples_per_s`` = samples / (window + coarse_flush x window /
  600 s); ``samples_per_s_window`` leaves it out.
* ``bytes_per_sample``: after compaction, the ``chunks`` table (rows and
  index, as the database stores them) divided by the points in it;
  ``chunk_payload_bytes_per_sample`` counts the chunk blobs alone.
  ``compact_samples_per_s`` is compaction's own rate (one pass, nothing else
  running). ``samples_per_s_with_compaction`` is measured: ingest as above
  into a database that also holds ``--backlog-nodes`` other nodes'
  ``--backlog-seconds`` of old frames, while the compactor thread works
  through them beside the writer (``compact_samples_per_s_concurrent``: its
  rate meanwhile; ``compaction_ran_dry``: the backlog ran out before the
  window ended, so compaction did not run throughout);
  ``samples_per_s_sustained``, the smaller of the two, is what a root ingests
  and compacts around the clock. ``*_masked`` keys are the
  same for the recording made with the agent's default masks (change
  suppression: fewer values per frame, irregular times per series).
* ``q_1h_raw_ms``: ``Store.series`` of one series over the last hour at 1 s
  (chunks plus the frames not yet compacted); ``q_1d_5m_ms``: one node's
  series over a day with a 5 min step; ``q_30d_summary_ms``: a 30-day cluster
  summary of one series over ``--summary-nodes`` nodes (30 days of rollups are
  generated for it, not ingested). Medians of ``--repeat`` runs after a warm-up.

Data: real agent frames recorded on this machine (``bench/data/``, see
``bench/record_frames.py``), replayed for many nodes. Each node starts at its
own place in the recording, its own clock offset, and perturbs the values the
way nodes differ: counters run at a node's own rate from its own base (rounded
as the recording is: integers stay integers, byte counts of pages stay
multiples of 4096), gauges are scaled per node and
get noise of the size of their own second-to-second change (rounded to the
recorded number of decimals; ratios stay in 0..1); constants differ per node.
Frames keep the recording's pattern of which series are sent.

Bounded: ``--seconds`` of ingest per backend (frames for a little more are made
first), a fixed amount of compaction work, and a handful of queries.
Quick run::

    python bench/root_ingest.py --nodes 500 --seconds 10 --compact-nodes 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import sqlalchemy as sa
import zstandard

from clumon.proto import codec
from clumon.proto.frames import Batch, Data, Hello, Kind, make
from clumon.proto.tree import LatestCache, walk
from clumon.root.storage import rollup_sql
from clumon.root.storage import schema as S
from clumon.root.storage import HistoryConfig
from clumon.root.ingest import Ingest
from clumon.root.registry import Registry
from clumon.root.storage.rollup import RollupRows
from clumon.root.storage import Store

DATA_DIR = Path(__file__).parent / "data"
PG_URL_ENV = "CLUMON_TEST_PG_URL"
DAY = 86400


# --- the recording and its perturbation ------------------------------------------------


@dataclass
class Recording:
    """One real node's frames: its dictionary and each DATA frame's values."""

    series: tuple[str, ...]
    inventory: dict
    ts: np.ndarray  # seconds since the first frame
    index: list[np.ndarray | None]
    values: list[np.ndarray]
    dense: np.ndarray  # (frames, series), forward-filled; NaN before first sent

    @classmethod
    def load(cls, path: Path) -> "Recording":
        rec = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(path.read_bytes()), raw=False)
        hello = codec.decode(rec["hello"]).body
        frames = [codec.decode(b) for b in rec["data"]]
        frames = [f for f in frames if f.body.dict_version == hello.dict_version]
        n = len(hello.series)
        dense = np.full((len(frames), n), np.nan)
        last = np.full(n, np.nan)
        index, values = [], []
        for i, f in enumerate(frames):
            pos, vals = f.body.index_array(), f.body.value_array().copy()
            last[pos] = vals
            dense[i] = last
            index.append(None if f.body.index is None else pos)
            values.append(vals)
        ts = np.array([f.ts for f in frames])
        return cls(tuple(hello.series), dict(hello.inventory), ts - ts[0], index, values, dense)

    def positions(self, j: int) -> np.ndarray:
        idx = self.index[j]
        return np.arange(len(self.series)) if idx is None else idx


def _quantum(column: np.ndarray) -> float:
    """The power of two (2 .. 2 MiB) every integer value is a multiple of (page
    and sector sized byte counts), or 1."""
    v = column[np.isfinite(column)]
    if len(np.unique(v)) < 2 or not np.all(v == np.round(v)) or np.any(np.abs(v) >= 2**62):
        return 1.0
    g = int(np.gcd.reduce(np.abs(v).astype(np.int64)))
    return float(g) if 2 <= g <= 1 << 21 and g & (g - 1) == 0 else 1.0


def _decimals(column: np.ndarray) -> int | None:
    """Fewest decimals (<= 6) that every finite value has, or None."""
    v = column[np.isfinite(column)]
    if not len(v):
        return 0
    for d in range(7):
        scaled = v * 10.0**d
        if np.all(np.abs(scaled) < 2**52) and np.allclose(scaled, np.round(scaled), rtol=0, atol=1e-6):
            return d
    return None


class Perturbed:
    """Many nodes' frames from one recording, each node different (see module doc)."""

    def __init__(self, rec: Recording, nodes: int, seed: int):
        self.rec = rec
        rng = np.random.default_rng(seed)
        dense = rec.dense
        n_frames, n_series = dense.shape
        first = np.where(np.isfinite(dense), dense, np.nanmean(np.where(np.isfinite(dense), dense, 0), axis=0))
        self.filled = np.nan_to_num(first)
        steps = np.diff(self.filled, axis=0)
        self.counter = np.array([s.endswith("_total") or (np.all(steps[:, k] >= 0) and np.any(steps[:, k] > 0)
                                 and s.split("{")[0].endswith(("_seconds", "_bytes_total", "_count")))
                                 for k, s in enumerate(rec.series)])
        self.ratio = np.array([s.split("{")[0].endswith("_ratio") for s in rec.series])
        self.decimals = [_decimals(dense[:, k]) for k in range(n_series)]
        self.scale = np.array([10.0 ** d if d is not None else 0.0 for d in self.decimals])
        self.quantum = np.array([_quantum(dense[:, k]) for k in range(n_series)])
        # counters: cumulative curve from the first frame, and its growth per lap
        self.cum = self.filled - self.filled[0]
        mean_step = np.where(n_frames > 1, steps.mean(axis=0) if len(steps) else 0, 0)
        self.lap = self.cum[-1] + mean_step
        self.noise = 0.5 * (np.abs(steps).mean(axis=0) if len(steps) else np.zeros(n_series))
        self.n_frames = n_frames
        self.phase = rng.integers(0, n_frames, nodes)
        self.offset = rng.uniform(0, 1, nodes)
        self.rate = rng.lognormal(0, 0.5, (nodes, n_series))
        self.gain = rng.uniform(0.85, 1.15, (nodes, n_series))
        self.base = np.round(self.filled[self.phase] * rng.uniform(0.5, 2.0, (nodes, n_series)))
        self.jitter = rec.ts - np.round(rec.ts)
        self.rng = rng

    def values(self, node: int, step: int) -> tuple[np.ndarray | None, np.ndarray, float]:
        """(index or None, values, time offset) of ``node``'s frame number ``step``."""
        a = int(self.phase[node]) + step
        j = a % self.n_frames
        pos = self.rec.positions(j)
        idx = self.rec.index[j]
        rec_vals = self.filled[j, pos]
        counter = self.counter[pos]
        out = rec_vals * self.gain[node, pos] + self.rng.normal(0, 1, len(pos)) * self.noise[pos]
        cum = self.cum[j, pos] + (a // self.n_frames) * self.lap[pos]
        out = np.where(counter, self.base[node, pos] + cum * self.rate[node, pos], out)
        out = np.where(self.ratio[pos], np.clip(out, 0.0, 1.0), out)
        scale = self.scale[pos]
        rounded = np.round(out * np.where(scale > 0, scale, 1.0)) / np.where(scale > 0, scale, 1.0)
        out = np.where(scale > 0, rounded, out)
        q = self.quantum[pos]
        out = np.where(q > 1, np.round(out / q) * q, out)
        out = np.where(np.isnan(self.rec.values[j]), np.nan, out)
        return idx, out, step + float(self.offset[node]) + float(self.jitter[j])


def node_name(i: int) -> str:
    return f"sim-{i:05d}"


def hello_frame(rec: Recording, node: str, inc: int, ts: float) -> bytes:
    return codec.encode(make(node, inc, ts, Hello(1, rec.series, rec.inventory, "agent"), seq=1))


def data_frame(node: str, inc: int, ts: float, seq: int, idx, values: np.ndarray) -> bytes:
    index = None if idx is None else idx.astype("<u2").tobytes()
    return codec.encode(make(node, inc, ts, Data(1, values.astype("<f8").tobytes(), index), seq=seq))


# --- phase 1: sustained ingest -------------------------------------------------------


def make_batches(rec: Recording, nodes: int, aggregators: int, seconds: int, t0: float, seed: int):
    """(hello batches, per second: [(aggregator, batch bytes, values)])."""
    gen = Perturbed(rec, nodes, seed)
    inc = int(t0 * 1e9)
    per_agg = [list(range(a, nodes, aggregators)) for a in range(aggregators)]
    hellos = []
    for a, members in enumerate(per_agg):
        frames = tuple(hello_frame(rec, node_name(i), inc, t0) for i in members)
        hellos.append((f"agg-{a}", codec.encode(make(f"agg-{a}", inc, t0, Batch(frames)))))
    seconds_out = []
    for s in range(seconds):
        batches = []
        for a, members in enumerate(per_agg):
            frames, values = [], 0
            for i in members:
                idx, vals, dt = gen.values(i, s)
                frames.append(data_frame(node_name(i), inc, t0 + dt, s + 2, idx, vals))
                values += int(np.count_nonzero(~np.isnan(vals)))
            batches.append((f"agg-{a}", codec.encode(make(f"agg-{a}", inc, t0 + s + 1, Batch(tuple(frames)))),
                            values))
        seconds_out.append(batches)
    return hellos, seconds_out


class TimedStore:
    """A Store whose write/maintain calls are timed (the time ACKs wait)."""

    def __init__(self, store: Store):
        self.store = store
        self.calls: list[float] = []
        self.upkeep: list[float] = []

    def write(self, *a, **kw):
        t = time.perf_counter()
        try:
            return self.store.write(*a, **kw)
        finally:
            self.calls.append(time.perf_counter() - t)

    def maintain(self, *a, **kw):
        t = time.perf_counter()
        try:
            return self.store.maintain(*a, **kw)
        finally:
            self.upkeep.append(time.perf_counter() - t)

    def __getattr__(self, name):
        return getattr(self.store, name)


async def _ingest(store: Store, hellos, seconds, maintain_every: float, max_wait: float) -> dict:
    timed = TimedStore(store)
    acked = {"frames": 0}
    ingest = Ingest(timed, Registry(), LatestCache(), lambda hop, ack: acked.__setitem__(
        "frames", acked["frames"] + sum(hi - lo + 1 for e in ack.entries for lo, hi in e.ranges)),
        lambda hop, node: None, "root", time.time_ns())
    bad = lambda sender, why: print(f"bad frame from {sender}: {why}", file=sys.stderr)  # noqa: E731

    def feed(hop: str, raw: bytes) -> None:
        frame = codec.decode(raw)
        for path, inner, data in walk(frame, (), raw, bad):
            ingest.accept(hop, path, inner, data)

    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(ingest.run_upkeep(maintain_every))]
    for hop, raw in hellos:
        feed(hop, raw)
    base_acked = sum(len(codec.decode(raw).body.frames) for _, raw in hellos)
    while acked["frames"] < base_acked:
        await asyncio.sleep(0.01)
    timed.calls.clear()
    frames = samples = 0
    t_start = time.perf_counter()
    deadline = t_start + max_wait
    for batches in seconds:
        for hop, raw, values in batches:
            while ingest.pending >= ingest.commit_max_frames and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            feed(hop, raw)
            samples += values
        frames += sum(len(codec.decode(raw).body.frames) for _, raw, _ in batches)
        await asyncio.sleep(0)
        if time.perf_counter() > deadline:
            break
    while acked["frames"] - base_acked < frames and time.perf_counter() < deadline + 60:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t_start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ingest.close()
    calls = sorted(timed.calls) or [0.0]
    upkeep = sorted(timed.upkeep) or [0.0]
    return {
        "samples_per_s": round(samples / elapsed),
        "frames_per_s": round(frames / elapsed),
        "values_per_frame": round(samples / max(frames, 1), 1),
        "ingest_seconds": round(elapsed, 2),
        "frames_acked": acked["frames"] - base_acked,
        "frames_fed": frames,
        "commit_p50_ms": round(1000 * calls[len(calls) // 2], 1),
        "commit_max_ms": round(1000 * calls[-1], 1),
        "upkeep_calls": len(timed.upkeep),
        "upkeep_max_ms": round(1000 * upkeep[-1], 1),
    }


def ingest_frames(rec: Recording, args) -> tuple[int, list, list]:
    """(seconds of frames, HELLOs, BATCHes per second) for ``--seconds`` of ingest
    at ``--expect-rate``.

    Frames end a minute before now: every minute they fill has closed by the
    time it is ingested, so rollups flow as in a root that keeps up, even when
    ingest runs faster than real time; and they start too recently for
    compaction to touch them.
    """
    per_second = args.nodes * len(rec.series)
    sim_seconds = max(5, int(args.seconds * args.expect_rate / per_second) + 2)
    t0 = float(int(time.time()) - sim_seconds - 60)
    hellos, seconds = make_batches(rec, args.nodes, args.aggregators, sim_seconds, t0, seed=1)
    return sim_seconds, hellos, seconds


def measure_ingest(url: str, rec: Recording, args) -> dict:
    sim_seconds, hellos, seconds = ingest_frames(rec, args)
    # Closed minutes are drained every 10 s (the default is 60: the same rows,
    # sooner, so a short window carries its share of them).
    config = HistoryConfig(flush_seconds=10.0)
    store = Store(url, history=config)
    try:
        out = asyncio.run(_ingest(store, hellos, seconds, args.maintain_every, args.seconds))
        if out["frames_fed"] == sim_seconds * args.nodes:
            out["note_ingest"] = "ran out of generated frames: raise --expect-rate for a longer run"
        out.update(coarse_flush(store, out, config.coarse_flush_seconds))
        return out
    finally:
        store.close()


def write_backlog(url: str, rec: Recording, args) -> tuple[int, float]:
    """Frames of ``--backlog-nodes`` other nodes for ``--backlog-seconds``,
    in complete windows before the compaction cutoff, written (and their
    rollups flushed) before the measurement; returns (values, seconds taken)."""
    width = 1800
    t_end = (int(time.time()) - 300) // width * width - width
    t0 = float(t_end - args.backlog_seconds)
    store = Store(url, history=HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12,
                                             retention_every=1e12))
    t = time.perf_counter()
    try:
        values = write_history(store, rec, args.backlog_nodes, args.backlog_seconds, t0, seed=4, prefix="old-")
        store.flush()
    finally:
        store.close()
    return values, time.perf_counter() - t


def measure_ingest_with_compaction(url: str, rec: Recording, args) -> dict:
    """Ingest as ``measure_ingest`` while the compactor thread works through a
    backlog of other nodes' old frames the whole time."""
    backlog, _ = write_backlog(url, rec, args)
    sim_seconds, hellos, seconds = ingest_frames(rec, args)
    config = HistoryConfig(flush_seconds=10.0)
    store = Store(url, history=config)
    try:
        store.start_compactor(every=1.0)
        out = asyncio.run(_ingest(store, hellos, seconds, args.maintain_every, args.seconds))
        dry = not store.compactor.todo(time.time())[1]
        store.compactor.stop()
        _, _, points = chunk_bytes(store)
        charged = coarse_flush(store, out, config.coarse_flush_seconds)
        compact_rate = round(points / max(store.compactor.busy_seconds, 1e-9))
        return {
            "samples_per_s_with_compaction": charged["samples_per_s"],
            "samples_per_s_with_compaction_window": out["samples_per_s"],
            "compact_samples_per_s_concurrent": compact_rate,
            "compaction_kept_up": compact_rate >= charged["samples_per_s"],
            # around the clock a root must ingest and compact the same rate
            "samples_per_s_sustained": min(charged["samples_per_s"], compact_rate),
            "compaction_ran_dry": dry,
            "compaction_backlog_samples": backlog,
            "upkeep_max_ms_with_compaction": out["upkeep_max_ms"],
            "commit_max_ms_with_compaction": out["commit_max_ms"],
        }
    finally:
        store.close()


def coarse_flush(store: Store, out: dict, every: float) -> dict:
    """Time one flush of the coarse tiers' partial buckets (the root does it
    every ``coarse_flush_seconds``, outside the short window) and charge its
    share to ``samples_per_s``."""
    h = store.history
    if hasattr(store, "_write_rollups"):
        write = lambda: store._write_rollups(math.inf)  # noqa: E731
    else:  # the code before rollups left write() (for before/after figures)
        write = lambda: store.write([], [], [], [])  # noqa: E731
    h.pending += [r for r in h.rollups.drain(("1m",), h.parent_of, time.time() - h.config.close_grace) if len(r)]
    write()  # what the window left pending
    t = time.perf_counter()
    h.pending += [r for r in h.rollups.drain(("30m", "2h", "1d"), h.parent_of) if len(r)]
    rows = sum(len(r) for r in h.pending)
    write()
    took = time.perf_counter() - t
    window = out["ingest_seconds"]
    return {
        "samples_per_s_window": out["samples_per_s"],
        "samples_per_s": round(out["samples_per_s"] * window / (window + took * window / every)),
        "coarse_flush_rows": rows,
        "coarse_flush_ms": round(1000 * took),
    }


# --- phase 2: compaction and bytes per sample ---------------------------------------------


def write_history(store: Store, rec: Recording, nodes: int, seconds: int, t0: float, seed: int,
                  prefix: str = "") -> int:
    """``seconds`` of ``nodes`` nodes' frames straight into the store; returns values."""
    gen = Perturbed(rec, nodes, seed)
    from clumon.root.storage import DictionaryRow, FrameRow, NodeRow

    inc = int(t0 * 1e9)
    names = [prefix + node_name(i) for i in range(nodes)]
    store.write([FrameRow(n, inc, 1, t0, int(Kind.HELLO), 1, hello_frame(rec, n, inc, t0)) for n in names],
                [DictionaryRow(n, inc, 1, rec.series, rec.inventory, "agent") for n in names], [],
                [NodeRow(n, "agg-0", "agg-0", "agent", "up", t0, inc, t0, {}) for n in names])
    values = 0
    batch = []
    for s in range(seconds):
        for i, n in enumerate(names):
            idx, vals, dt = gen.values(i, s)
            batch.append(FrameRow(n, inc, s + 2, t0 + dt, int(Kind.DATA), 1, data_frame(n, inc, t0 + dt, s + 2,
                                                                                    idx, vals)))
            values += int(np.count_nonzero(~np.isnan(vals)))
        if len(batch) >= 5000:
            store.write(batch)
            batch = []
    store.write(batch)
    return values


def table_bytes(store: Store, table: str) -> int:
    """Bytes ``table`` and its indexes take in the database."""
    with store.engine.connect() as conn:
        if store.backend == "postgresql":
            return int(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar_one())
        return int(conn.execute(sa.text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
                                        "(SELECT name FROM sqlite_schema WHERE tbl_name = :t)"),
                                {"t": table}).scalar_one())


def chunk_bytes(store: Store) -> tuple[int, int, int]:
    """(bytes the chunks table takes on disk, sum of blob lengths, points)."""
    with store.engine.connect() as conn:
        payload, points = conn.execute(sa.text("SELECT coalesce(sum(length(data)), 0), "
                                               "coalesce(sum(points), 0) FROM chunks")).one()
    return table_bytes(store, "chunks"), int(payload), int(points)


def chunk_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM chunks")).scalar_one())


def measure_compaction(url: str, rec: Recording, args, suffix: str = "") -> tuple[dict, Store, float]:
    """Two hours of ``--compact-nodes`` nodes, compacted as the root would."""
    hours = 2
    t_end = float(int(time.time()) // 1800 * 1800)
    t0 = t_end - hours * 3600
    store = Store(url, history=HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12,
                                             compact_nodes_per_call=10_000, compact_budget=1e12,
                                             retention_every=1e12))
    write_history(store, rec, args.compact_nodes, hours * 3600, t0, seed=2)
    store.flush()
    with store.engine.connect() as conn:
        rows_1m = conn.execute(sa.text("SELECT count(*) FROM rollup_1m")).scalar_one()
    rollup_row = table_bytes(store, "rollup_1m") / max(rows_1m, 1)
    t = time.perf_counter()
    compacted = store.maintain(t_end + 1)["frames_compacted"]
    elapsed = time.perf_counter() - t
    disk, payload, points = chunk_bytes(store)
    out = {
        f"bytes_per_sample{suffix}": round(disk / max(points, 1), 3),
        f"chunk_payload_bytes_per_sample{suffix}": round(payload / max(points, 1), 3),
        f"compact_samples_per_s{suffix}": round(points / elapsed) if compacted else 0,
        f"compacted_samples{suffix}": points,
        f"rollup_bytes_per_row{suffix}": round(rollup_row, 1),
        f"chunk_rows{suffix}": chunk_rows(store),
    }
    return out, store, t_end


# --- phase 3: queries -------------------------------------------------------------------


def synthetic_rollups(store: Store, series: str, nodes: int, now: float, seed: int) -> None:
    """30 days of one series' rollups: every scope at 30m/2h/1d for ``nodes``
    nodes, node 0 also at 1m, aggregator and cluster at 1m."""
    rng = np.random.default_rng(seed)
    names = [node_name(i) for i in range(nodes)]
    aggs = [f"agg-{i}" for i in range(max(1, nodes // 100))]
    keys = {}
    with store.engine.connect() as conn:
        known = {(r.scope, r.entity, r.series): r.key for r in conn.execute(sa.select(S.rollup_keys))}
        next_key = max(known.values(), default=0) + 1
    rows_keys = []
    for scope, entity in ([("node", n) for n in names] + [("aggregator", a) for a in aggs] + [("cluster", "")]):
        k = known.get((scope, entity, series))
        if k is None:
            k = next_key
            next_key += 1
            rows_keys.append({"key": k, "scope": scope, "entity": entity, "series": series})
        keys[(scope, entity)] = k
    with store.engine.begin() as conn:
        if rows_keys:
            conn.execute(S.rollup_keys.insert(), rows_keys)
    store.history.rollups.load_keys([(r["key"], r["scope"], r["entity"], r["series"]) for r in rows_keys])
    for tier, width in (("1m", 60), ("30m", 1800), ("2h", 7200), ("1d", DAY)):
        start = (now - 30 * DAY) // width * width
        buckets = np.arange(start, now, width, dtype=np.int64)
        members = [k for (scope, e), k in keys.items() if scope != "node" or tier != "1m" or e == names[0]]
        with store.engine.begin() as conn:
            for lo in range(0, len(members), 50):
                part = members[lo: lo + 50]
                key = np.repeat(np.array(part, dtype=np.int64), len(buckets))
                mn = rng.uniform(0, 1, len(key))
                mx = mn + rng.uniform(0, 1, len(key))
                count = np.full(len(key), width, dtype=np.int64)
                rows = RollupRows(tier, key, np.tile(buckets, len(part)), mn, mx, (mn + mx) / 2 * count,
                                  np.zeros(len(key)), count)
                rollup_sql.write_rows(conn, [rows], store.copy_threshold)


def timed(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def measure_queries(store: Store, rec: Recording, t_end: float, args) -> dict:
    series = "node_load1" if "node_load1" in rec.series else rec.series[0]
    node = node_name(0)
    now = time.time()
    out = {"q_1h_raw_ms": timed(lambda: store.series(node, series, t_end - 3600, t_end, step=1), args.repeat)}
    pts = store.series(node, series, t_end - 3600, t_end, step=1)
    out["q_1h_raw_points"] = len(pts["points"])
    synthetic_rollups(store, series, args.summary_nodes, now, seed=3)
    day = store.series(node, series, now - DAY, now, step=300)
    out["q_1d_5m_ms"] = timed(lambda: store.series(node, series, now - DAY, now, step=300), args.repeat)
    out["q_1d_5m_points"] = len(day["points"])
    out["q_30d_summary_ms"] = timed(lambda: store.summary(series, now - 30 * DAY, now), args.repeat)
    summ = store.summary(series, now - 30 * DAY, now)
    out["q_30d_summary_points"] = sum(len(g["points"]) for g in summ["groups"].values())
    return out


# --- per backend ----------------------------------------------------------------------------


def pg_schema(base: str):
    """A fresh schema's URL and a function dropping it."""
    from urllib.parse import quote

    schema = f"clumon_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}", drop


def fresh_url(backend: str, workdir: Path, pg_url: str | None, label: str, cleanups: list) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'{label}.db'}"
    url, drop = pg_schema(pg_url)
    cleanups.append(drop)
    return url


def run_backend(backend: str, args, full: Recording, masked: Recording, workdir: Path) -> dict:
    out: dict = {"bench": "root_ingest", "host_cores": os.cpu_count(), "python": platform.python_version(),
                 "backend": backend, "nodes": args.nodes, "aggregators": args.aggregators,
                 "series_per_node": len(full.series)}
    cleanups: list = []
    try:
        if args.seconds > 0:
            out.update(measure_ingest(fresh_url(backend, workdir, args.pg_url, "ingest", cleanups), full, args))
            if args.backlog_nodes > 0:
                out.update(measure_ingest_with_compaction(
                    fresh_url(backend, workdir, args.pg_url, "concurrent", cleanups), full, args))
        res, store, t_end = measure_compaction(fresh_url(backend, workdir, args.pg_url, "compact", cleanups),
                                               full, args)
        out.update(res)
        try:
            out.update(measure_queries(store, full, t_end, args))
        finally:
            store.close()
        res, store, _ = measure_compaction(fresh_url(backend, workdir, args.pg_url, "masked", cleanups),
                                           masked, args, "_masked")
        store.close()
        out.update(res)
    finally:
        for drop in cleanups:
            drop()
    targets = {"samples_per_s": 750_000 if backend == "sqlite" else 1_000_000}
    out["targets_met"] = {
        "samples_per_s": out.get("samples_per_s", 0) >= targets["samples_per_s"],
        "samples_per_s_with_compaction": out.get("samples_per_s_sustained", 0) >= targets["samples_per_s"],
        "bytes_per_sample": out["bytes_per_sample"] <= 2.0,
        "bytes_per_sample_masked": out["bytes_per_sample_masked"] <= 2.0,
        "queries": all(out[k] <= 50 for k in ("q_1h_raw_ms", "q_1d_5m_ms", "q_30d_summary_ms")),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--aggregators", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=40.0, help="wall seconds of ingest per backend (0: skip)")
    ap.add_argument("--expect-rate", type=float, default=1_800_000,
                    help="samples/s to make frames for (frames run out sooner if ingest is faster)")
    ap.add_argument("--maintain-every", type=float, default=10.0)
    ap.add_argument("--compact-nodes", type=int, default=20)
    ap.add_argument("--backlog-nodes", type=int, default=100,
                    help="nodes of old frames the compactor works through while ingest is measured (0: skip)")
    ap.add_argument("--backlog-seconds", type=int, default=3600)
    ap.add_argument("--summary-nodes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--recording", default=str(DATA_DIR / "agent_full.msgpack.zst"))
    ap.add_argument("--recording-masked", default=str(DATA_DIR / "agent_masked.msgpack.zst"))
    ap.add_argument("--pg-url", default=os.environ.get(PG_URL_ENV))
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    full, masked = Recording.load(Path(args.recording)), Recording.load(Path(args.recording_masked))
    with tempfile.TemporaryDirectory(prefix="clumon-bench-") as d:
        for backend in args.backends.split(","):
            if backend == "postgresql" and not args.pg_url:
                continue
            print(json.dumps(run_backend(backend, args, full, masked, Path(d))), flush=True)


if __name__ == "__main__":
    main()
