"""Compaction in its own thread beside writes, on SQLite and PostgreSQL: replays
racing the compactor are stored and rolled up once, the database going away
mid-compaction loses nothing, and closing the store stops the thread."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from clumon.proto import codec
from clumon.proto.frames import Data, Hello, Kind, make
from clumon.root.storage.compaction import CHUNK_SECONDS
from clumon.root.storage import HistoryConfig
from clumon.root.storage import DictionaryRow, FrameRow, NodeRow, Store, StoreUnavailable
from db_fixtures import db_url, pg_schema_url  # noqa: F401

INC = 1_700_000_000_000_000_000
SERIES = ("node_load1", "node_memory_used_ratio", "node_uptime_seconds")
NODES = ("n1", "n2", "n3")
START = float(int(time.time()) // CHUNK_SECONDS * CHUNK_SECONDS - 86400)  # complete windows
MANUAL = HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12, retention_every=1e12)
WAIT = 60.0  # generous: only a bound on waiting for the thread


def data(node: str, seq: int) -> FrameRow:
    ts = START + seq
    raw = codec.encode(make(node, INC, ts, Data.from_values(1, [float(seq), seq / 4096, 7.0 + seq]), seq=seq))
    return FrameRow(node, INC, seq, ts, int(Kind.DATA), 1, raw)


def open_store(url: str, **kw) -> Store:
    store = Store(url, history=MANUAL, **kw)
    hellos = [FrameRow(n, INC, 0, START, int(Kind.HELLO), 1,
                       codec.encode(make(n, INC, START, Hello(1, SERIES), seq=0))) for n in NODES]
    store.write(hellos, [DictionaryRow(n, INC, 1, SERIES, {}, "agent") for n in NODES], [],
                [NodeRow(n, "agg", "agg", "agent", "up", START, INC, START, {}) for n in NODES])
    return store


def frames_of(seqs) -> list[FrameRow]:
    return [data(n, s) for s in seqs for n in NODES]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def check_once(store: Store, seqs: range) -> None:
    """Every frame's values are in the chunks once, the rollups counted each
    once, and no frame is left uncompacted."""
    store.flush()
    for node in NODES:
        pts = store.series(node, SERIES[0], START, START + 2 * CHUNK_SECONDS, tier="raw")["points"]
        assert pts == [[START + s, float(s)] for s in seqs]
    with store.engine.connect() as conn:
        counts = dict(conn.execute(sa.text(
            "SELECT entity, sum(count) FROM rollup_1m_named WHERE scope = 'node' AND series = :s GROUP BY entity"),
            {"s": SERIES[2]}).all())
        left = conn.execute(sa.text("SELECT count(*) FROM frames WHERE kind = :k"), {"k": int(Kind.DATA)}).scalar()
    assert counts == {n: len(seqs) for n in NODES}
    assert left == 0


def test_replays_racing_the_compactor_thread_are_stored_and_rolled_up_once(db_url):
    store = open_store(db_url)
    seqs = range(1, 1201)
    store.start_compactor(every=0.01)
    try:
        store.write(frames_of(seqs[:300]))
        wait_for(lambda: store.compactor.frames_compacted > 0, "the first compaction")
        for lo in range(300, len(seqs), 30):
            # new frames, and replays of some the compactor has retired or is retiring
            store.write(frames_of(seqs[lo: lo + 30]) + frames_of(seqs[lo - 200: lo: 3]))
        wait_for(lambda: store.compactor.frames_compacted >= 3 * len(seqs) + 3, "the thread to catch up")
    finally:
        store.compactor.stop()
    assert not store.compactor.running
    store.write(frames_of(seqs))  # everything once more, after the last pass
    assert store.compact() == 0
    check_once(store, seqs)
    store.close()


def test_close_stops_the_compactor_thread_and_its_process(db_url):
    store = open_store(db_url)
    store.write(frames_of(range(1, 200)))
    store.start_compactor(every=3600)
    thread = store.compactor._thread
    wait_for(lambda: store.compactor.passes > 0, "a pass")
    planners = multiprocessing.active_children()
    assert planners  # the pass planned in a process of its own
    store.close()
    assert not thread.is_alive()
    assert not any(t.name == "compactor" for t in threading.enumerate())
    assert not any(p.is_alive() for p in planners)


def test_sqlite_locked_while_the_thread_compacts_loses_nothing(tmp_path):
    path = tmp_path / "root.db"
    store = open_store(f"sqlite:///{path}", busy_timeout=0.2)
    seqs = range(1, 400)
    store.write(frames_of(seqs))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held elsewhere
    store.start_compactor(every=0.05)
    try:
        wait_for(lambda: "locked" in store.compactor.last_error, "the compactor to meet the lock")
        assert store.compactor.frames_compacted == 0
        other.execute("ROLLBACK")
        wait_for(lambda: store.compactor.frames_compacted == 3 * len(seqs) + 3, "compaction after the lock")
    finally:
        other.close()
        store.compactor.stop()
    store.write(frames_of(seqs))
    check_once(store, seqs)
    store.close()


@pytest.mark.pg
def test_postgresql_frames_locked_after_the_chunks_are_written_loses_nothing(pg_schema_url):
    store = open_store(pg_schema_url, busy_timeout=0.2)
    seqs = range(1, 400)
    store.write(frames_of(seqs))
    locker = sa.create_engine(pg_schema_url)
    with locker.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        # reads go on, deletes wait: the chunks commit, retiring the frames fails
        conn.exec_driver_sql("LOCK TABLE frames IN EXCLUSIVE MODE")
        with pytest.raises(StoreUnavailable, match="lock"):
            store.compact()
        conn.exec_driver_sql("ROLLBACK")
    locker.dispose()
    assert store.stats()["chunks_rows"] > 0
    store.write(frames_of(seqs))  # replayed while nothing was retired: still in frames, ignored
    assert store.compact() == 3 * len(seqs) + 3
    store.write(frames_of(seqs))  # and after: recognised by the compacted ranges
    check_once(store, seqs)
    store.close()


PLANNER_OWNER = """
import multiprocessing, os, sys
from clumon.root.storage.planner import Planner
from clumon.root.storage import Store
if __name__ == "__main__":
    Store(sys.argv[1])  # the schema
    planner = Planner(sys.argv[1], 5.0)
    planner.submit("nobody", 0.0)()
    print(multiprocessing.active_children()[0].pid, flush=True)
    os.kill(os.getpid(), 9)
"""


def test_the_planning_process_ends_when_the_root_is_killed(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(PLANNER_OWNER)
    out = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'root.db'}"],
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == -9, out.stderr
    child = int(out.stdout.split()[0])
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), "the planner to end")


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"
