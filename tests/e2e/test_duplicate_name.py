"""Two live agents with one name (a cloned host, a stray second agent): the parent's
ROUTER hands the routing id over to the newcomer, and the first agent, its TCP link
still up, used to be cut off for good. Now it reconnects when its only parent is
silent, the parent reports ``duplicate_name``, and when the stray stops the first
agent's data resumes with no gap in its sequence."""

from __future__ import annotations

import sqlite3
import time

from harness import wait_for


def frames(db, node: str) -> list[tuple[int, int, float]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT incarnation, seq, ts FROM frames WHERE node = ? ORDER BY incarnation, seq",
                            (node,)).fetchall()


def events(db, kind: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT subject, message FROM events WHERE type = ?", (kind,)).fetchall()


def test_a_second_agent_with_the_same_name_is_reported_and_cuts_nobody_off(tree, tmp_path):
    db = tmp_path / "clumon.db"
    root = tree.root(heartbeat_interval=0.5, down_after=3.0)
    tree.agent("node-1", [root.port], failover_after=3.0)
    wait_for(lambda: len(frames(db, "node-1")) >= 3, what="the first agent's frames")
    first = frames(db, "node-1")[0][0]

    stray = tree.agent("node-1", [root.port], failover_after=3.0, state_dir=str(tmp_path / "stray"),
                       label="node-1-stray")
    wait_for(lambda: events(db, "duplicate_name"), timeout=40, what="the duplicate_name event")
    assert events(db, "duplicate_name")[0][0] == "node-1"
    assert stray.stop() == 0
    stopped = time.time()

    def resumed():
        return [f for f in frames(db, "node-1") if f[0] == first and f[2] > stopped + 1.0]

    wait_for(resumed, timeout=40, what="the first agent's data after the stray stopped")
    # every frame of the first agent is stored once, with no gap (what was refused
    # while the stray lived came again from its spool)
    seqs = wait_for(lambda: (s := [f[1] for f in frames(db, "node-1") if f[0] == first])
                    and s == list(range(1, max(s) + 1)) and s, timeout=60, what="no gap in the first agent's frames")
    assert len(seqs) == len(set(seqs))
    assert "two live processes are named node-1" in (tmp_path / "root.log").read_text()
