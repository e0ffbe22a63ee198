"""Rollups, compaction and retention through the Store, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clumon.proto import codec
from clumon.proto.frames import Data, Hello, Kind, make
from clumon.root.storage import compaction
from clumon.root.storage import schema as S
from clumon.root.storage import HistoryConfig
from clumon.root.storage.rollup import TIERS
from clumon.root.storage.rollup_sql import RETENTION
from clumon.root.storage import DictionaryRow, FrameRow, NodeRow, Store
from db_fixtures import pg_base_url, pg_schema_url, with_search_path  # noqa: F401

INC = 1_700_000_000_000_000_000
SERIES = ("node_load1", 'node_disk_used_ratio{mount="/"}', "node_uptime_seconds")
PARENT = {"n1": "agg-a", "n2": "agg-a", "n3": "agg-b"}
T0 = float(int(time.time()) // 86400 * 86400 - 86400)  # yesterday: inside every retention horizon
#: Never flush or compact on its own: the tests say when.
MANUAL = HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12, retention_every=1e12)


def hello(node: str, inc: int = INC, dv: int = 1, series=SERIES) -> tuple[DictionaryRow, FrameRow]:
    raw = codec.encode(make(node, inc, T0, Hello(dv, series), seq=0))
    return DictionaryRow(node, inc, dv, series, {}, "agent"), FrameRow(node, inc, 0, T0, int(Kind.HELLO), dv, raw)


def data(node: str, seq: int, ts: float, values, index=None, inc: int = INC, dv: int = 1) -> FrameRow:
    raw = codec.encode(make(node, inc, ts, Data.from_values(dv, values, index), seq=seq))
    return FrameRow(node, inc, seq, ts, int(Kind.DATA), dv, raw)


def nodes_rows():
    return [NodeRow(n, p, p, "agent", "up", T0, INC, T0, {}) for n, p in PARENT.items()]


def open_store(url: str, **kw) -> Store:
    store = Store(url, history=kw.pop("history", MANUAL), **kw)
    dicts, hellos = zip(*(hello(n) for n in PARENT))
    store.write(list(hellos), list(dicts), [], nodes_rows())
    return store


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'root.db'}"
    return request.getfixturevalue("pg_schema_url")


# --- rollups: exact against a direct computation -----------------------------------

samples = st.lists(
    st.tuples(
        st.sampled_from(sorted(PARENT)),
        st.integers(0, len(SERIES) - 1),
        st.floats(0, 3 * 86400, allow_nan=False).map(lambda s: round(s, 3)),
        st.one_of(st.floats(-1e12, 1e12, allow_nan=False), st.integers(-1000, 1000).map(float)),
    ),
    min_size=1,
    max_size=60,
)


def expected_rollups(points):
    """(tier, scope, entity, series, bucket) -> (min, max, fsum, count), directly."""
    groups = defaultdict(list)
    for node, pos, t, v in points:
        for tier, width in TIERS:
            b = int(math.floor((T0 + t) / width) * width)
            for scope, entity in (("node", node), ("aggregator", PARENT[node]), ("cluster", "")):
                groups[(tier, scope, entity, SERIES[pos], b)].append(v)
    return {k: (min(v), max(v), math.fsum(v), len(v)) for k, v in groups.items()}


def stored_rollups(store):
    out = {}
    with store.engine.connect() as conn:
        for tier, _ in TIERS:
            q = sa.text(f'SELECT scope, entity, series, bucket, "min", "max", "sum", "count" FROM "rollup_{tier}_named"')
            for r in conn.execute(q):
                out[(tier, r.scope, r.entity, r.series, r.bucket)] = (r.min, r.max, r.sum, r.count)
    return out


def check_rollups(store, points):
    want, got = expected_rollups(points), stored_rollups(store)
    assert set(got) == set(want)
    for k, (mn, mx, total, n) in want.items():
        gmn, gmx, gsum, gn = got[k]
        assert (gmn, gmx, gn) == (mn, mx, n), k
        assert gsum == pytest.approx(total, rel=1e-9, abs=1e-300), k


def run_rollup_property(url, points, order_seed, cuts, **store_args):
    """Write one frame per sample in a shuffled order, in batches, with replays
    and rollup flushes at arbitrary points; then compare."""
    store = open_store(url, **store_args)
    frames = [data(node, seq, T0 + t, [v], [pos]) for seq, (node, pos, t, v) in enumerate(points, start=1)]
    rnd = random.Random(order_seed)
    rnd.shuffle(frames)
    start = 0
    for i, cut in enumerate(sorted(cuts) + [len(frames)]):
        batch = frames[start:cut]
        store.write(batch + frames[: start // 2], [], [], [])  # some frames replayed
        if i % 3 != 2:  # most batches reach SQL, so rows get merged in any order
            store.flush()
        start = max(start, cut)
    store.write(frames, [], [], [])  # everything again
    store.flush()
    check_rollups(store, points)
    store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points=samples, order_seed=st.integers(0, 2**32), cuts=st.lists(st.integers(0, 60), max_size=8))
def test_rollups_equal_direct_computation_sqlite(points, order_seed, cuts):
    with tempfile.TemporaryDirectory() as d:
        run_rollup_property(f"sqlite:///{Path(d) / 'root.db'}", points, order_seed, cuts)


@pytest.mark.pg
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points=samples, order_seed=st.integers(0, 2**32), cuts=st.lists(st.integers(0, 60), max_size=8))
def test_rollups_equal_direct_computation_postgresql(points, order_seed, cuts):
    base = pg_base_url()
    schema = f"clumon_h_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        # copy_threshold=1: every batch through COPY, several per transaction
        run_rollup_property(with_search_path(base, schema), points, order_seed, cuts, copy_threshold=1)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def test_sums_merged_across_flushes_stay_exact_under_cancellation(url):
    store = open_store(url)
    for seq, v in enumerate((1e16, 1.0, -1e16, 0.5), start=1):
        store.write([data("n1", seq, T0 + seq, [v], [0])], [], [], [])
        store.flush()  # each value reaches the same rows in a separate merge
    got = stored_rollups(store)
    for tier, width in TIERS:
        assert got[(tier, "node", "n1", SERIES[0], int(T0 // width * width))][2] == 1.5, tier
    store.close()


def test_sums_past_the_double_range_saturate_in_memory_and_in_sql(url):
    """1e308 twice overflowed a sum to inf (NULL in SQLite, an error in PostgreSQL)
    and every later write carrying rollups failed; sums now saturate at +-1e308."""
    store = open_store(url)
    values = (1e308, 1e308, 1e308, 1.0, -1e308, -1e308, -1e308)
    for seq, v in enumerate(values, start=1):
        store.write([data("n1", seq, T0 + seq, [v, -v], [0, 1])], [], [], [])
        if seq != 2:
            store.flush()  # merged into the row already in SQL: the SQL side saturates too
    store.write([data("n1", 8, T0 + 8, [1e308, 1e308], [0, 1])], [], [], [])
    store.flush()
    got = stored_rollups(store)
    for tier, width in TIERS:
        b = int(T0 // width * width)
        for pos in (0, 1):
            mn, mx, total, n = got[(tier, "node", "n1", SERIES[pos], b)]
            assert n == 8 and mn == -1e308 and mx == 1e308, (tier, pos)
            assert math.isfinite(total) and abs(total) <= 1e308, (tier, pos, total)
    assert store.rollup_rows_rejected == 0
    store.write([data("n1", 9, T0 + 9, [2.0, 2.0], [0, 1])], [], [], [])  # later writes go on
    store.flush()
    store.close()


def test_nan_values_are_missing_not_rolled_up(url):
    store = open_store(url)
    store.write([data("n1", 1, T0 + 1, [1.0, None, 3.0]), data("n1", 2, T0 + 2, [None, None, 5.0])], [], [], [])
    store.flush()
    got = stored_rollups(store)
    assert got[("1m", "node", "n1", SERIES[0], int(T0 // 60 * 60))][3] == 1
    assert ("1m", "node", "n1", SERIES[1], int(T0 // 60 * 60)) not in got
    store.close()


def test_series_and_summary_read_the_tiers(url):
    store = open_store(url)
    frames = []
    for s in range(1, 601):  # 10 min at 1 s on every node
        for n, node in enumerate(PARENT):
            frames.append(data(node, s, T0 + s, [s + n, 0.5, 100.0 + s]))
    store.write(frames, [], [], [])
    store.flush()
    raw = store.series("n1", SERIES[0], T0, T0 + 600, step=1)
    assert raw["tier"] == "raw"
    assert raw["points"] == [[T0 + s, float(s)] for s in range(1, 601)]
    minute = store.series("n1", SERIES[0], T0, T0 + 600, step=60)
    assert minute["tier"] == "1m"
    assert sum(p["count"] for p in minute["points"]) == 600
    assert math.isclose(sum(p["sum"] for p in minute["points"]), sum(range(1, 601)))
    cluster = store.summary(SERIES[0], T0, T0 + 600)
    assert cluster["groups"][""]["count"] == 1800
    assert (cluster["groups"][""]["min"], cluster["groups"][""]["max"]) == (1.0, 602.0)
    by_agg = store.summary(SERIES[0], T0, T0 + 600, by="aggregator")
    assert {k: g["count"] for k, g in by_agg["groups"].items()} == {"agg-a": 1200, "agg-b": 600}
    store.close()


def test_rollup_keys_of_a_new_site_are_written_in_bounded_slices(url):
    """A new site makes a million keys at once: each write carries at most
    ``write_slice_rows`` keys and rows together, keys first."""
    config = HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12, retention_every=1e12,
                           write_slice_rows=4)
    store = open_store(url, history=config)
    points = [(n, pos, 1.0, float(i)) for i, n in enumerate(sorted(PARENT)) for pos in range(len(SERIES))]
    store.write([data(n, 1, T0 + 1.0, [v for m, _, _, v in points if m == n]) for n in sorted(PARENT)])
    store.history.due(time.time(), force=True)
    keys = len(store.history.rollups.new_keys)
    assert keys == 9 + 2 * 3 + 3  # node, aggregator and cluster keys
    written = []
    for _ in range(keys // 4 + 1):
        store.write([], [], [], [])
        with store.engine.connect() as conn:
            written.append(conn.execute(sa.text("SELECT count(*) FROM rollup_keys")).scalar_one())
    assert written == [4 * i for i in range(1, keys // 4 + 1)] + [keys]
    store.flush()
    check_rollups(store, points)
    store.close()


def test_each_upkeep_drains_one_closed_minute_then_one_coarse_tier(url):
    store = open_store(url)
    later = time.time() + 2e12  # both flushes are due once, then not again
    points = [("n1", 0, 60.0 * m + 1, float(m)) for m in range(3)]
    store.write([data(n, seq, T0 + t, [v], [pos]) for seq, (n, pos, t, v) in enumerate(points, start=1)])
    h = store.history
    drained = []
    for _ in range(7):
        before = len(h.pending)
        h.due(later)
        drained.append(sorted({(r.tier, int(r.bucket[0])) for r in h.pending[before:]}))
    minute = [(("1m", int(T0 + 60 * m)),) for m in range(3)]
    assert drained == [list(m) for m in minute] + [[("30m", int(T0))], [("2h", int(T0))], [("1d", int(T0))], []]
    store.flush()
    check_rollups(store, points)
    store.close()


# --- compaction -----------------------------------------------------------------------


def test_compaction_keeps_every_point_and_stays_idempotent(url):
    store = open_store(url)
    width = compaction.CHUNK_SECONDS
    start = (T0 // width + 1) * width
    frames = [data("n1", s, start + s * 0.5, [s / 100, 0.25, float(s)]) for s in range(1, 2 * int(width) * 2)]
    store.write(frames, [], [], [])
    before = store.series("n1", SERIES[0], start, start + 3 * width, tier="raw")["points"]
    now = start + 2 * width + store.history.config.raw_window + 1
    old = sum(1 for f in frames if f.ts < start + 2 * width)
    assert store.maintain(now)["frames_compacted"] == old + 3  # and the three HELLOs
    st = store.stats()
    assert st["chunks_rows"] == 2 * len(SERIES)
    assert st["frames_rows"] == len(frames) - old
    assert store.series("n1", SERIES[0], start, start + 3 * width, tier="raw")["points"] == before
    # A replay of compacted frames is not stored, nor rolled up, again.
    store.write(frames, [], [], [])
    store.flush()
    assert store.stats()["frames_rows"] == len(frames) - old
    one_minute = stored_rollups(store)
    assert sum(v[3] for k, v in one_minute.items() if k[:4] == ("1m", "node", "n1", SERIES[0])) == len(frames)
    # Ranges survive a restart.
    store.close()
    again = Store(store.url, history=MANUAL)
    again.write(frames[:10], [], [], [])
    assert again.stats()["frames_rows"] == len(frames) - old
    again.close()


def test_late_frames_merge_into_an_existing_chunk(url):
    store = open_store(url)
    width = compaction.CHUNK_SECONDS
    start = (T0 // width + 1) * width
    store.write([data("n1", s, start + s, [float(s), 0.0, 0.0]) for s in range(1, 100, 2)], [], [], [])
    now = start + width + store.history.config.raw_window + 1
    store.maintain(now)
    store.write([data("n1", s, start + s, [float(s), 0.0, 0.0]) for s in range(2, 100, 2)], [], [], [])
    store.maintain(now)
    pts = store.series("n1", SERIES[0], start, start + width, tier="raw")["points"]
    assert pts == [[start + s, float(s)] for s in range(1, 100)]
    assert store.stats()["chunks_rows"] == len(SERIES)
    store.close()


# --- retention --------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ages=st.lists(st.floats(0, 12 * 365 * 86400, allow_nan=False), min_size=1, max_size=40))
def test_retention_removes_exactly_what_is_older_than_each_horizon(ages):
    now = 2_000_000_000.0
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{Path(d) / 'root.db'}", history=MANUAL)
        with store.engine.begin() as conn:
            conn.execute(S.rollup_keys.insert(), [{"key": 1, "scope": "node", "entity": "n", "series": "s"}])
            for tier, table in S.rollups.items():
                buckets = sorted({int(now - a) for a in ages})
                conn.execute(table.insert(), [
                    {"key": 1, "bucket": b, "min": 0, "max": 0, "sum": 0, "sum_c": 0, "count": 1} for b in buckets
                ])
            conn.execute(S.chunks.insert(), [
                {"key": 1, "start": b, "first_ts": b, "last_ts": b, "points": 1, "data": b"x"}
                for b in sorted({int(now - a) for a in ages})
            ])
        store.expire(now)
        with store.engine.connect() as conn:
            for tier, table in S.rollups.items():
                kept = {r.bucket for r in conn.execute(sa.select(table.c.bucket))}
                assert kept == {int(now - a) for a in ages if int(now - a) >= now - RETENTION[tier]}, tier
            kept = {r.start for r in conn.execute(sa.select(S.chunks.c.start))}
            assert kept == {int(now - a) for a in ages if int(now - a) >= now - RETENTION["raw"]}
        store.close()


def test_chunks_of_schema_version_2_survive_the_upgrade(url):
    from clumon.root.storage import chunks
    from clumon.root.storage import make_engine

    engine = make_engine(url)
    assert S.upgrade(engine, S.MIGRATIONS[:2]) == 2
    ts = T0 + np.arange(10.0)
    with engine.begin() as conn:
        conn.execute(S.rollup_keys.insert(), [{"key": 7, "scope": "node", "entity": "n1", "series": SERIES[0]}])
        conn.execute(S._chunks_v2.insert(), [
            {"node": node, "series": SERIES[0], "start": int(T0), "first_ts": T0, "last_ts": T0 + 9,
             "points": 10, "data": chunks.encode(ts, ts - T0 + i)}
            for i, node in enumerate(("n1", "n2"))
        ])
    engine.dispose()
    store = Store(url, history=MANUAL)
    assert store.schema_version == len(S.MIGRATIONS)
    for i, node in enumerate(("n1", "n2")):
        pts = store.series(node, SERIES[0], T0, T0 + 9, tier="raw")["points"]
        assert pts == [[t, t - T0 + i] for t in ts.tolist()]
    with store.engine.connect() as conn:
        named = conn.execute(sa.text("SELECT node, series, points FROM chunks_named ORDER BY node")).all()
    assert [tuple(r) for r in named] == [("n1", SERIES[0], 10), ("n2", SERIES[0], 10)]
    store.close()


def test_raw_reads_pick_one_series_from_indexed_frames(url):
    store = open_store(url)
    store.write([
        data("n1", 1, T0 + 1, [1.0, 2.0, 3.0]),
        data("n1", 2, T0 + 2, [5.0, 4.0], [2, 0]),  # suppressed: only some series, any order
        data("n1", 3, T0 + 3, [6.0], [1]),
        data("n1", 4, T0 + 4, [None, 7.0], [0, 2]),  # missing is NaN, not a point
        data("n2", 5, T0 + 5, [9.0, 9.0, 9.0]),
    ], [], [], [])
    pts = {s: store.series("n1", s, T0, T0 + 10, tier="raw")["points"] for s in SERIES}
    assert pts[SERIES[0]] == [[T0 + 1, 1.0], [T0 + 2, 4.0]]
    assert pts[SERIES[1]] == [[T0 + 1, 2.0], [T0 + 3, 6.0]]
    assert pts[SERIES[2]] == [[T0 + 1, 3.0], [T0 + 2, 5.0], [T0 + 4, 7.0]]
    assert store.series("n1", "no_such_series", T0, T0 + 10, tier="raw")["points"] == []
    store.close()
