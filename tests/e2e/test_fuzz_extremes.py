"""The fuzz tests of the tree extended: finite extremes, deep nesting and a twin
with the same routing id, against a real root. After each, the probe's frames are
stored once each with no gap, and nothing was acknowledged that is not stored."""

from __future__ import annotations

import sqlite3
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from harness import FrameChild, wait_for

from clumon.cli.client import Client
from clumon.proto import codec
from clumon.proto.frames import PROTOCOL_VERSION, Data, Event, Kind

EXTREMES = [1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -5e-324,
            2.2250738585072014e-308, 0.0, -0.0, float("nan")]
VALUES = st.one_of(st.sampled_from(EXTREMES), st.floats(allow_nan=False, allow_infinity=False))


def stored(db, node: str, inc: int) -> list[int]:
    """Seqs of (node, inc) in the database: raw frames, and those compacted into
    chunks (old timestamps are compacted at once; the ledger keeps their seqs)."""
    with sqlite3.connect(db) as conn:
        raw = [r[0] for r in conn.execute("SELECT seq FROM frames WHERE node = ? AND incarnation = ?", (node, inc))]
        ranges = conn.execute("SELECT lo, hi FROM compacted WHERE node = ? AND incarnation = ?", (node, inc)).fetchall()
    return sorted(raw + [s for lo, hi in ranges for s in range(lo, hi + 1)])


def no_gap_and_nothing_acked_unstored(child: FrameChild, db, last: int) -> None:
    seqs = stored(db, child.name, child.inc)
    assert seqs == list(range(1, last + 1)), "a gap or a duplicate"
    assert child.drain_acks() <= set(seqs)


@pytest.fixture
def children():
    made: list[FrameChild] = []
    yield made
    for c in made:
        c.close()


def test_extremes_deep_nesting_and_a_twin_lose_nothing(tree, tmp_path, children):
    db = tmp_path / "clumon.db"
    root = tree.root(heartbeat_interval=0.5, down_after=2.0, rollup_flush=0.3, maintain_interval=0.3)
    probe = FrameChild(root.port, "probe")
    children.append(probe)
    probe.hello()
    seq = [1]

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(VALUES, min_size=2, max_size=2), st.floats(-7200.0, 0.0),
           st.dictionaries(st.text(max_size=5), st.sampled_from(EXTREMES[:-1]), max_size=3))
    def send(values, age, attrs):
        seq[0] += 1
        probe.send(seq[0], Data.from_values(1, values), ts=time.time() + age)
        seq[0] += 1
        probe.send(seq[0], Event("fuzz", "probe", "extremes", attrs), ts=time.time() + age)

    send()
    wait_for(lambda: probe.drain_acks() >= set(range(1, seq[0] + 1)), what="every fuzzed frame acked")
    no_gap_and_nothing_acked_unstored(probe, db, seq[0])

    # deep nesting from another sender: refused at decode, nothing stored, nobody hurt
    deep = FrameChild(root.port, "deep")
    children.append(deep)
    body = msgpack.packb([1, ["a"], {"x": "HOLE"}, "agent"])
    for depth in (40, 600, 50_000):
        frame = msgpack.packb([PROTOCOL_VERSION, int(Kind.HELLO), "deep", deep.inc, time.time(), 1, "BODY"])
        deep.sock.send(frame.replace(msgpack.packb("BODY"), body.replace(
            msgpack.packb("HOLE"), b"\x91" * depth + msgpack.packb("leaf"))))
    with Client(root.query) as c:
        wait_for(lambda: c.call("health")["decode_errors_by_sender"].get("deep", 0) >= 3, what="deep frames counted")
    assert stored(db, "deep", deep.inc) == []

    # a twin with the probe's routing id (a newer process) takes the link over; the probe
    # reconnects and goes on: its frames are refused while the twin lives, and stored
    # once when the twin is gone and they come again
    twin = FrameChild(root.port, "probe")
    children.append(twin)
    for _ in range(3):
        twin.heartbeat()
        time.sleep(0.2)
    probe.reconnect()
    first_of_twin_time = seq[0] + 1
    for _ in range(5):
        probe.heartbeat()
        seq[0] += 1
        probe.send(seq[0], Data.from_values(1, [float(seq[0]), 1e308]))
        twin.heartbeat()
        time.sleep(0.2)
    with sqlite3.connect(db) as conn:
        got = wait_for(lambda: conn.execute("SELECT subject FROM events WHERE type = 'duplicate_name'").fetchall(),
                       what="the duplicate_name event")
    assert got[0][0] == "probe"
    assert not (probe.drain_acks() & set(range(first_of_twin_time, seq[0] + 1))), "acked while the twin lived"
    twin.sock.close(0)  # the twin stops (its context goes with the fixture)
    time.sleep(2.5)  # the twin is quiet for down_after
    for s in range(first_of_twin_time, seq[0] + 1):  # the probe's spool, replayed
        probe.send(s, Data.from_values(1, [float(s), 1e308]))
    wait_for(lambda: probe.drain_acks() >= set(range(1, seq[0] + 1)), what="the replayed frames acked")
    no_gap_and_nothing_acked_unstored(probe, db, seq[0])
    assert stored(db, "probe", twin.inc) == []
    assert root.proc.poll() is None
