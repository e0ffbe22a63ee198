"""Nothing is acknowledged that is not in the database, with a real root and SQLite.

A hand-made child (a DEALER speaking the codec) sends frames to a running root and
collects its ACKs. Finite extremes (1e308 twice in one rollup bucket) must not
poison later writes; a frame the database refuses is reported and never acked; a
deleted database file stops the acks with a clear error.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from harness import FrameChild, wait_for

from clumon.proto.frames import Data
from clumon.cli.client import Client


@pytest.fixture
def child_of():
    made = []

    def make_child(port: int, name: str = "probe") -> FrameChild:
        c = FrameChild(port, name)
        made.append(c)
        return c

    yield make_child
    for c in made:
        c.close()


def stored_seqs(db, node: str = "probe") -> set[int]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT seq FROM frames WHERE node = ?", (node,))}


def health(root) -> dict:
    with Client(root.query) as c:
        return c.call("health")


def assert_acked_are_stored(child: FrameChild, db) -> None:
    """The promise: every ACKed frame is in the database (and no seq twice)."""
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute("SELECT seq FROM frames WHERE node = ? AND incarnation = ?",
                                           (child.name, child.inc))]
    assert len(rows) == len(set(rows)), "a frame stored twice"
    assert child.acked <= set(rows), f"acked but not stored: {sorted(child.acked - set(rows))}"


def test_finite_extremes_do_not_poison_rollups_or_later_writes(tree, tmp_path, child_of):
    root = tree.root(rollup_flush=0.3, maintain_interval=0.3)
    db = tmp_path / "clumon.db"
    child = child_of(root.port)
    child.hello()
    # a closed minute (its rollup bucket is drained at once), 5 s into it: the frames
    # at old .. old + 4 share the bucket (at time.time() - 180 they straddled a minute 1 time in 20)
    old = (time.time() // 60 - 3) * 60 + 5
    child.send(2, Data.from_values(1, [1e308, 5e-324]), ts=old)
    child.send(3, Data.from_values(1, [1e308, -5e-324]), ts=old + 1)
    child.send(4, Data.from_values(1, [-1e308, -0.0]), ts=old + 2)
    wait_for(lambda: child.drain_acks() >= {1, 2, 3, 4}, what="the extreme frames acked")

    def rollup_of(series: str):
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT r.sum, r.sum_c, r.count, r.min, r.max FROM rollup_1m r JOIN rollup_keys k ON k.key = r.key "
                "WHERE k.scope = 'node' AND k.entity = 'probe' AND k.series = ?", (series,)).fetchone()

    got = wait_for(lambda: rollup_of("a"), what="the rollup row of the extreme minute")
    total, err, count, lo, hi = got
    assert count == 3 and lo == -1e308 and hi == 1e308
    assert total is not None and err is not None  # saturated, never inf or NULL
    # the same bucket again: the SQL merge saturates too
    child.send(5, Data.from_values(1, [1e308, 1.0]), ts=old + 3)
    child.send(6, Data.from_values(1, [1e308, 1.0]), ts=old + 4)
    wait_for(lambda: (r := rollup_of("a")) and r[2] == 5, what="the merged rollup row")
    assert rollup_of("a")[0] is not None
    # and every later frame is stored and acknowledged
    for seq in range(7, 27):
        child.send(seq, Data.from_values(1, [float(seq), 1.0]))
    wait_for(lambda: child.drain_acks() >= set(range(1, 27)), what="later frames acked")
    h = health(root)
    assert h["frames_rejected"] == 0 and h["commit_errors"] == 0 and h["database_ok"] is True
    assert_acked_are_stored(child, db)


def test_a_frame_the_database_refuses_is_reported_and_never_acked(tree, tmp_path, child_of):
    root = tree.root()
    db = tmp_path / "clumon.db"
    with sqlite3.connect(db) as conn:  # the database itself refuses one frame
        conn.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON frames "
                     "WHEN NEW.node = 'probe' AND NEW.seq = 3 BEGIN SELECT RAISE(ABORT, 'refused by test'); END")
    child = child_of(root.port)
    child.hello()
    for seq in range(2, 8):
        child.send(seq, Data.from_values(1, [float(seq), 1.0]))
    wait_for(lambda: child.drain_acks() >= {1, 2, 4, 5, 6, 7}, what="the other frames acked")
    wait_for(lambda: health(root)["frames_rejected"] >= 1, what="frames_rejected in health")
    time.sleep(0.5)
    assert 3 not in child.drain_acks(), "a frame the database refused was acknowledged"
    assert stored_seqs(db) == {1, 2, 4, 5, 6, 7}
    assert_acked_are_stored(child, db)

    def event():
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT message FROM events WHERE type = 'frames_rejected' AND subject = 'probe'"
                                ).fetchone()
    assert "not acknowledged" in wait_for(event, what="the frames_rejected event")[0]
    h = health(root)
    assert h["frames_accepted"] == h["frames_stored"] + h["pending_frames"] + h["frames_rejected"]
    # once the database takes it, the sender's replay is stored and acked
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse_one")
    child.send(3, Data.from_values(1, [3.0, 1.0]))
    wait_for(lambda: 3 in child.drain_acks(), what="the replayed frame acked")
    assert stored_seqs(db) == set(range(1, 8))


def test_a_deleted_database_file_stops_the_acks_with_a_clear_error(tree, tmp_path, child_of):
    root = tree.root()
    db = tmp_path / "clumon.db"
    child = child_of(root.port)
    child.hello()
    child.send(2, Data.from_values(1, [2.0, 1.0]))
    wait_for(lambda: child.drain_acks() >= {1, 2}, what="first frames acked")
    os.unlink(db)
    for seq in range(3, 6):
        child.send(seq, Data.from_values(1, [float(seq), 1.0]))
    h = wait_for(lambda: (h := health(root)) and not h["database_ok"] and h, what="database_ok false")
    assert "deleted" in h["database_error"] and "restart" in h["database_error"]
    time.sleep(1.0)
    assert child.drain_acks() == {1, 2}, "frames written to a deleted file were acknowledged"
    assert h["pending_frames"] >= 3
    assert "was deleted while open" in (tmp_path / "root.log").read_text()
    assert root.proc.poll() is None, "the root keeps running (and heartbeating)"
