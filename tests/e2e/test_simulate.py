"""End to end: ``clumon simulate`` behind a real aggregator and root, as processes."""

from __future__ import annotations

import sqlite3
import sys

from harness import Daemon, wait_for

from clumon.cli.client import Client

AGENTS = 50
SERIES = 20


def test_fifty_simulated_agents_are_up_stored_once_and_readable(tree, tmp_path):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    sim = Daemon("sim", [sys.executable, "-m", "clumon.cli", "simulate", "--agents", str(AGENTS),
                         "--series", str(SERIES), "--interval", "0.5", "--duration", "10", "--processes", "2",
                         "--stats-interval", "1", "--parent", f"tcp://127.0.0.1:{agg.port}"],
                 tmp_path / "sim.log").start()
    try:
        assert sim.wait_ready(60), (tmp_path / "sim.log").read_text()[-2000:]
        info = sim.ready
        assert info["agents"] == AGENTS

        with Client(root.query) as c:
            def all_up():
                nodes = {n["name"]: n for n in c.call("nodes")}
                sims = {k: v for k, v in nodes.items() if k.startswith("sim-")}
                return len(sims) == AGENTS and all(n["state"] == "up" for n in sims.values()) and sims

            sims = wait_for(all_up, timeout=60, what="all simulated agents up")
            assert {n["parent"] for n in sims.values()} == {"agg-1"}

            cached = c.call("read", targets=["sim-7"], max_age=60)
            part = cached["nodes"]["sim-7"]
            assert len(part["values"]) == SERIES and part["live"] is False
            fresh = c.call("read", targets=["sim-8", "sim-9"], series=["*_total"], max_age=0)
            assert set(fresh["nodes"]) == {"sim-8", "sim-9"} and not fresh["timed_out"]
            part = fresh["nodes"]["sim-8"]
            assert part["live"] is True and part["values"]
            assert all(name.endswith("_total") for name in part["values"])

        # the simulator stops by itself after --duration, once everything is acknowledged
        assert wait_for(lambda: sim.proc.poll() is not None, timeout=90, what="simulator exits") is not None
        assert sim.stop(60) == 0
        final = sim.stats()
        assert final is not None and final.get("final"), list(sim.lines)[-5:]
    finally:
        sim.stop(60)

    assert final["spool_frames"] == 0 and final["spool_dropped"] == 0, final
    assert final["frames_acked"] == final["frames_sent"] > AGENTS * 10
    with sqlite3.connect(tmp_path / "clumon.db") as db:
        total, distinct = db.execute(
            "SELECT count(*), count(DISTINCT node || ':' || incarnation || ':' || seq) FROM frames "
            "WHERE node LIKE 'sim-%'").fetchone()
        per_node = db.execute("SELECT node, count(*), min(seq), max(seq), count(DISTINCT incarnation) "
                              "FROM frames WHERE node LIKE 'sim-%' GROUP BY node").fetchall()
    assert total == distinct == final["frames_sent"]  # every frame sent is stored, once
    assert len(per_node) == AGENTS
    for node, count, lo, hi, incarnations in per_node:
        assert (lo, hi, incarnations) == (1, count, 1), node  # no gaps
