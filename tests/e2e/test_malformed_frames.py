"""Malformed and mutated frames sent to a running root and a running aggregator,
over open links and over CurveZMQ links (the fuzzers hold accepted keys: what
a key holder sends is checked as closely as anything else).

Nothing crashes, malformed frames store nothing and are counted as decode errors,
and the good agent keeps being served throughout.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
import zmq
from curve_keys import Keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from harness import wait_for

from clumon.proto import codec
from clumon.proto.frames import Data, Event, Heartbeat, Hello, make
from clumon.cli.client import Client
from clumon.proto.curve import ClientKeys


def templates(sender: str) -> list[bytes]:
    inc = time.time_ns()
    return [
        codec.encode(make(sender, inc, time.time(), Hello(1, ("a", "b"), {"host": sender}), 1)),
        codec.encode(make(sender, inc, time.time(), Data.from_values(1, [1.0, 2.0]), 2)),
        codec.encode(make(sender, inc, time.time(), Event("x", sender, "m", {}), 3)),
        codec.encode(make(sender, inc, time.time(), Heartbeat(0))),
        codec.encode_batch(sender, inc, time.time(), [b"\x01\x02", b"junk"]),
    ]


def malformed(data: bytes) -> bool:
    try:
        codec.decode(data)
    except codec.DecodeError:
        return True
    return False


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, val in ops:
        if not buf:
            buf.append(val)
            continue
        pos %= len(buf)
        if kind == 0:
            buf[pos] = val
        elif kind == 1:
            buf.insert(pos, val)
        else:
            del buf[pos]
    return bytes(buf)


def dealer(ctx: zmq.Context, identity: str, port: int, keys: ClientKeys | None = None) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, identity.encode())
    s.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        keys.secure(s)
    s.connect(f"tcp://127.0.0.1:{port}")
    if keys is not None:
        time.sleep(0.3)  # the CURVE handshake, before anything is sent
    return s


class Site:
    """root, agg-1 and node-1, open or secured; fuzzers' sockets and a client."""

    def __init__(self, tree, tmp_path, secured: bool):
        self.keys = k = Keys(tmp_path) if secured else None
        c = (lambda name, parent=None, auth=None: {"curve": k.curve(name, parent, auth)}) if secured else \
            (lambda *a: {})
        self.root = tree.root(**c("root", None, k and k.authorized("root", "agg-1", "fuzz-root", "ann")))
        self.agg = tree.aggregator("agg-1", [self.root.port],
                                   **c("agg-1", "root", k and k.authorized("agg-1", "node-1", "fuzz-agg")))
        tree.agent("node-1", [self.agg.port], **c("node-1", "agg-1"))

    def client(self) -> Client:
        if self.keys is None:
            return Client(self.root.query)
        return Client(self.root.query, key=str(self.keys.secret("ann")), server_key=str(self.keys.public("root")))

    def dealer(self, ctx, identity: str, to_root: bool) -> zmq.Socket:
        keys = None
        if self.keys is not None:
            keys = ClientKeys.load(self.keys.secret(identity), self.keys.public("root" if to_root else "agg-1"))
        return dealer(ctx, identity, (self.root if to_root else self.agg).port, keys)


def frames_of(db, node: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM frames WHERE node = ?", (node,)).fetchone()[0]


@pytest.mark.parametrize("secured", [False, True], ids=["open", "curve"])
def test_garbage_to_root_and_aggregator_is_counted_and_stores_nothing(tree, tmp_path, secured):
    site = Site(tree, tmp_path, secured)
    db = tmp_path / "clumon.db"
    wait_for(lambda: frames_of(db, "node-1") >= 2, what="node-1 stored")

    ctx = zmq.Context()
    to_root = site.dealer(ctx, "fuzz-root", True)
    to_agg = site.dealer(ctx, "fuzz-agg", False)
    sent = {"n": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300),
                     st.builds(lambda t, ops: mutate(t, ops), st.sampled_from(templates("fuzz-root")),
                               st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
                                        min_size=1, max_size=4))))
    def send_malformed(data):
        if not malformed(data):
            return
        to_root.send(data)
        to_agg.send(data)
        sent["n"] += 1

    send_malformed()
    # a message with the wrong number of parts, and an oversized frame
    to_root.send_multipart([b"a", b"b"])
    to_root.send(b"\x97" + b"\x00" * (17 * 1024 * 1024))
    assert sent["n"] > 50

    with site.client() as c:
        health = wait_for(lambda: (h := c.call("health"))["decode_errors_by_sender"].get("fuzz-root", 0) >= sent["n"] and h,
                          what="root counts every bad frame")
        assert health["decode_errors"] >= sent["n"]
        # the aggregator's decode errors reach the root as its health series
        wait_for(lambda: (c.call("latest", node="agg-1")["values"].get("clumon_aggregator_decode_errors_total") or [0])[0] >= sent["n"],
                 what="aggregator counts every bad frame")
        before = c.call("nodes")
        seen_before = {n["name"]: n["last_seen"] for n in before}["node-1"]
        wait_for(lambda: {n["name"]: n for n in c.call("nodes")}["node-1"]["last_seen"] > seen_before + 0.5,
                 what="node-1 still served")
        assert {n["name"]: n for n in c.call("nodes")}["node-1"]["state"] == "up"
        names = {n["name"] for n in c.call("nodes")}
    assert "fuzz-root" not in names and "fuzz-agg" not in names
    assert frames_of(db, "fuzz-root") == 0 and frames_of(db, "fuzz-agg") == 0
    ctx.destroy(0)


@pytest.mark.parametrize("secured", [False, True], ids=["open", "curve"])
def test_mutated_frames_that_stay_valid_crash_nothing(tree, tmp_path, secured):
    site = Site(tree, tmp_path, secured)
    db = tmp_path / "clumon.db"
    wait_for(lambda: frames_of(db, "node-1") >= 2, what="node-1 stored")
    ctx = zmq.Context()
    to_root = site.dealer(ctx, "fuzz-root", True)
    to_agg = site.dealer(ctx, "fuzz-agg", False)
    root_t, agg_t = templates("fuzz-root"), templates("fuzz-agg")

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(root_t) - 1),
           st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=3))
    def send_mutated(i, ops):
        to_root.send(mutate(root_t[i], ops))
        to_agg.send(mutate(agg_t[i], ops))

    send_mutated()
    with site.client() as c:
        before = {n["name"]: n for n in c.call("nodes")}["node-1"]["last_seen"]
        wait_for(lambda: {n["name"]: n for n in c.call("nodes")}["node-1"]["last_seen"] > before + 0.5,
                 what="node-1 still served")
        assert c.call("health")["decode_errors"] > 0
    for d in tree.daemons:
        assert d.proc.poll() is None, f"{d.label} died"
    ctx.destroy(0)
