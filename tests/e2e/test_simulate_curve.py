"""End to end: ``clumon simulate --keys`` behind a secured aggregator and root (CurveZMQ
on every link), and simulated agents without keys, or with keys the aggregator does not
list, storing nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from curve_keys import Keys
from harness import Daemon, wait_for

from clumon.cli.client import Client

AGENTS = 12
SERIES = 10


def secured_tree(tree, tmp_path: Path, nodes: list[str]):
    """root (accepting agg-1 and the client ann) <- agg-1 (accepting ``nodes``)."""
    k = Keys(tmp_path)
    root = tree.root(curve=k.curve("root", authorized=k.authorized("root", "agg-1", "ann")))
    agg = tree.aggregator("agg-1", [root.port], curve=k.curve("agg-1", "root", k.authorized("agg-1", *nodes)))
    return k, root, agg


def simulate(tmp_path: Path, label: str, port: int, prefix: str, extra: list[str], seconds: float) -> Daemon:
    return Daemon(label, [sys.executable, "-m", "clumon.cli", "simulate", "--agents", str(AGENTS),
                          "--prefix", prefix, "--series", str(SERIES), "--interval", "0.5",
                          "--duration", f"{seconds}s", "--processes", "2", "--stats-interval", "1",
                          "--drain-timeout", "3", "--parent", f"tcp://127.0.0.1:{port}", *extra],
                  tmp_path / f"{label}.log").start()


def finish(sim: Daemon) -> dict:
    """Wait until the simulator stops by itself; its final stats line."""
    wait_for(lambda: sim.proc.poll() is not None, timeout=60, what=f"{sim.label} exits")
    assert sim.stop(30) == 0, sim.log_path.read_text()[-2000:]
    final = sim.stats()
    assert final is not None and final.get("final"), list(sim.lines)[-5:]
    return final


def stored(db: Path, prefix: str) -> tuple[int, int, int]:
    """(frames, distinct (node, incarnation, seq), nodes) stored for nodes named ``prefix*``."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT node || ':' || incarnation || ':' || seq), "
                            "count(DISTINCT node) FROM frames WHERE node LIKE ?", (prefix + "%",)).fetchone()


def test_simulated_agents_with_keys_are_stored_behind_a_secured_tree(tree, tmp_path):
    names = [f"sim-{i}" for i in range(AGENTS)]
    k, root, agg = secured_tree(tree, tmp_path, names)
    k.gen(*names)
    sim = simulate(tmp_path, "sim", agg.port, "sim-", ["--keys", str(k.dir), "--parent-key", str(k.public("agg-1"))],
                   seconds=6)
    try:
        assert sim.wait_ready(60), sim.log_path.read_text()[-2000:]
        with Client(root.query, 10.0, key=str(k.secret("ann")), server_key=str(k.public("root"))) as c:
            ups = wait_for(lambda: (n := {x["name"]: x for x in c.call("nodes") if x["name"].startswith("sim-")})
                           and len(n) == AGENTS and all(x["state"] == "up" for x in n.values()) and n,
                           timeout=60, what="every simulated agent up")
            assert {x["parent"] for x in ups.values()} == {"agg-1"}
            fresh = c.call("read", targets=["sim-3"], max_age=0)  # a sync read down the secured links
            assert fresh["nodes"]["sim-3"]["live"] is True
        final = finish(sim)
    finally:
        sim.stop(30)
    assert final["spool_frames"] == 0 and final["frames_acked"] == final["frames_sent"] > AGENTS * 5, final
    total, distinct, nodes = stored(tmp_path / "clumon.db", "sim-")
    assert total == distinct == final["frames_sent"] and nodes == AGENTS


def test_simulated_agents_without_keys_or_with_unlisted_keys_store_nothing(tree, tmp_path):
    k, root, agg = secured_tree(tree, tmp_path, ["node-1"])  # agg-1 accepts no simulated agent
    k.gen(*[f"rogue-{i}" for i in range(AGENTS)])
    bare = simulate(tmp_path, "bare", agg.port, "bare-", [], seconds=4)
    rogue = simulate(tmp_path, "rogue", agg.port, "rogue-",
                     ["--keys", str(k.dir), "--parent-key", str(k.public("agg-1"))], seconds=4)
    try:
        finals = [finish(bare), finish(rogue)]
    finally:
        bare.stop(30)
        rogue.stop(30)
    for final in finals:
        assert final["agents"] == AGENTS and final["frames_sent"] > 0 and final["frames_acked"] == 0, final
    with Client(root.query, 10.0, key=str(k.secret("ann")), server_key=str(k.public("root"))) as c:
        names = {x["name"] for x in c.call("nodes")}
        assert "agg-1" in names and not any(n.startswith(("bare-", "rogue-")) for n in names)
    db = tmp_path / "clumon.db"
    assert stored(db, "bare-")[0] == 0 and stored(db, "rogue-")[0] == 0


def test_simulate_refuses_keys_it_cannot_use(tmp_path):
    k = Keys(tmp_path)
    k.gen("agg-1", "sim-0")
    base = [sys.executable, "-m", "clumon.cli", "simulate", "--agents", "2", "--parent", "tcp://127.0.0.1:1"]
    for extra, says in ((["--keys", str(k.dir)], "go together"),
                        (["--keys", str(k.dir), "--parent-key", str(k.secret("nope"))], "--parent-key"),
                        (["--keys", str(k.dir), "--parent-key", str(k.public("agg-1"))], "sim-1.key_secret")):
        out = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and says in out.stderr, out.stderr
