"""A root (or aggregator) stopped and continued (SIGSTOP/SIGCONT, a frozen VM) reads
the frames queued meanwhile before it judges its children: no false down events."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

from harness import wait_for

from clumon.cli.client import Client


def judged_down(db, judge: str, subject: str) -> list[str]:
    """State events in which ``judge`` (the parent) called ``subject`` down."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT attrs FROM events WHERE type = 'state' AND source = ? AND subject = ?",
                            (judge, subject)).fetchall()
    return [r[0] for r in rows if '"new":"down"' in r[0].replace(" ", "")]


def test_a_paused_root_and_aggregator_do_not_call_their_children_down(tree, tmp_path):
    root = tree.root(heartbeat_interval=0.5, down_after=3.0)
    agg = tree.aggregator("agg-1", [root.port], heartbeat_interval=0.5, down_after=3.0, failover_after=30.0)
    tree.agent("node-1", [agg.port], failover_after=30.0)
    tree.agent("node-2", [root.port], failover_after=30.0)
    db = tmp_path / "clumon.db"
    with Client(root.query) as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}.get("node-1") == "up"
                 and {n["name"]: n["state"] for n in c.call("nodes")}.get("node-2") == "up", what="all up")
    for d in (agg, root):
        os.kill(d.proc.pid, signal.SIGSTOP)
        time.sleep(6.0)  # twice down_after
        os.kill(d.proc.pid, signal.SIGCONT)
    time.sleep(2.0)
    with Client(root.query) as c:
        h = wait_for(lambda: c.call("health"), what="root answers")
        wait_for(lambda: all(n["state"] == "up" for n in c.call("nodes") if n["role"] != "root"), what="all up again")
    # the aggregator was silent while stopped, so the root may call it down; but
    # neither paused parent calls down a child that kept sending while it slept
    assert not judged_down(db, "agg-1", "node-1")
    assert not judged_down(db, h["name"], "node-2")
    assert judged_down(db, h["name"], "agg-1"), "the root saw the stopped aggregator go down"
