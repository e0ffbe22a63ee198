"""Masks through the real tree: set at the root, applied at the agent behind an
aggregator, seen in the stored frames, kept across an agent restart; and an agent
whose values all fail their masks still counts as alive."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from harness import wait_for

from clumon.proto import codec
from clumon.cli.client import Client

LOAD = {"node_load1", "node_load5", "node_load15"}


def cli(query: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint", query, *args],
                          capture_output=True, text=True, timeout=30)


def data_frames(db: Path, node: str) -> list[tuple[int, int, set[str]]]:
    """(incarnation, seq, names carried) of each stored DATA frame of ``node``."""
    with sqlite3.connect(db) as conn:
        dicts = {(inc, v): json.loads(s) for inc, v, s in conn.execute(
            "SELECT incarnation, dict_version, series FROM dictionaries WHERE node = ?", (node,))}
        rows = conn.execute("SELECT incarnation, seq, dict_version, payload FROM frames "
                            "WHERE node = ? AND kind = 2 ORDER BY incarnation, seq", (node,)).fetchall()
    out = []
    for inc, seq, version, payload in rows:
        names = dicts.get((inc, version))
        if names is not None:
            body = codec.decode(payload).body
            out.append((inc, seq, {names[i] for i, _ in body.pairs()}))
    return out


def test_set_mask_through_the_tree_is_applied_and_survives_a_restart(tree, tmp_path):
    db = tmp_path / "clumon.db"
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    agent = tree.agent("node-1", [agg.port])
    wait_for(lambda: data_frames(db, "node-1"), what="node-1 stores DATA")

    shown = cli(root.query, "--json", "mask", "show", "node-1")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["source"] == "config"

    out = cli(root.query, "--json", "mask", "set", "node-1", "10 node_load* U", "90 * drop", "--max-silence", "0")
    assert out.returncode == 0, out.stderr
    in_force = json.loads(out.stdout)["in_force"]["node-1"]
    assert in_force["rules"] == ["10 node_load* U", "90 * drop"] and in_force["max_silence"] == 0
    assert in_force["source"] == "control"
    (incarnation,) = {inc for inc, _, _ in data_frames(db, "node-1")}

    def masked_frames(inc: int) -> list[set[str]]:
        frames = [names for i, _, names in data_frames(db, "node-1") if i == inc]
        # the frames after the first masked one are all masked: the mask stays in force
        first = next((k for k, names in enumerate(frames) if names <= LOAD), None)
        return [] if first is None else frames[first:]

    frames = wait_for(lambda: len(masked_frames(incarnation)) >= 3 and masked_frames(incarnation),
                      what="frames carrying only node_load*")
    assert all(names == LOAD for names in frames), frames  # max_silence 0: every load value, every time

    # the same agent (name, config, state_dir) stopped and started again
    assert agent.stop() == 0
    tree.agent("node-1", [agg.port])
    incarnations = wait_for(lambda: (incs := sorted({i for i, _, _ in data_frames(db, "node-1")})) and len(incs) == 2
                            and incs, what="frames of the new incarnation")
    frames = wait_for(lambda: len(masked_frames(incarnations[1])) >= 3 and masked_frames(incarnations[1]),
                      what="the restarted agent's masked frames")
    new = [names for i, _, names in data_frames(db, "node-1") if i == incarnations[1]]
    assert all(names <= LOAD for names in new), "the masks were in force from the first frame"
    with Client(root.query) as c:
        masks = wait_for(lambda: c.call("masks", node="node-1"), what="masks after restart")
    assert masks["rules"] == ["10 node_load* U", "90 * drop"] and masks["source"] == "control"

    # and back to the configured masks
    out = cli(root.query, "--json", "mask", "set", "agg-1", "--reset")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["in_force"]["node-1"]["source"] == "config"
    assert not (tmp_path / "node-1" / "masks.json").exists()


def test_set_mask_rejects_bad_rules_and_unknown_targets(tree):
    root = tree.root()
    with Client(root.query) as c:
        for args, code in [({"target": "node-1", "masks": ["ten x U"]}, "bad_args"),
                           ({"target": "node-1", "masks": ["10 x U"], "max_silence": -1}, "bad_args"),
                           ({"target": "ghost", "masks": ["10 x U"]}, "unknown_node"),
                           ({"masks": []}, "bad_args")]:
            try:
                c.call("set_mask", **args)
            except Exception as exc:
                assert getattr(exc, "code", None) == code, (args, exc)
            else:
                raise AssertionError(f"set_mask {args} succeeded")
    out = cli(root.query, "mask", "set", "node-1", "10 x Q")
    assert out.returncode == 1 and "bad_args" in out.stderr


def test_an_agent_whose_values_all_fail_their_masks_stays_up(tree, tmp_path):
    """Nothing passes a bounded mask no value can meet, so no DATA is sent; the idle
    uplink heartbeats and the root never marks the node suspect or down."""
    db = tmp_path / "clumon.db"
    root = tree.root()  # down_after 3 s, agents heartbeat every 0.5 s (harness)
    tree.agent("node-1", [root.port], masks={"rules": ["10 * B -2 -1"]})
    with Client(root.query) as c:
        wait_for(lambda: any(n["name"] == "node-1" for n in c.call("nodes")), what="node-1 known")
        start = c.call("health")
        # the root's own clock: wait until it has run three down_after periods past this point
        wait_for(lambda: c.call("health")["uptime_s"] > start["uptime_s"] + 9.0, timeout=60, what="9 s of root time")
        end = c.call("health")
        node = {n["name"]: n for n in c.call("nodes")}["node-1"]
        states = [e["attrs"].get("new") for e in c.call("events", node="node-1") if e["type"] == "state"]
    assert node["state"] == "up"
    assert "suspect" not in states and "down" not in states, states
    assert data_frames(db, "node-1") == []
    assert end["frames_in"] - start["frames_in"] >= 9, "heartbeats kept coming"


def test_a_mask_set_while_the_agent_is_down_is_applied_when_it_returns(tree, tmp_path):
    """The change waits at the root (kept across a root restart) and is sent again
    once the agent is up, until the agent confirms it."""
    from harness import restart

    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    agent = tree.agent("node-1", [agg.port])
    tree.agent("node-2", [agg.port])
    with Client(root.query) as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}.get("node-2") == "up", what="agents up")
    assert agent.stop() == 0
    with Client(root.query) as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}["node-1"] == "down", what="node-1 down")

    out = cli(root.query, "--json", "mask", "set", "agg-1", "10 node_load* U", "90 * drop")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["in_force"]) == {"node-2"} and result["down"] == ["node-1"]
    assert result["pending"] == ["node-1"]
    shown = cli(root.query, "mask", "show", "node-1")
    assert shown.returncode == 1 and "node_down" in shown.stderr and "waits for it" in shown.stderr

    # the root goes away and comes back: the pending change is still there
    assert root.stop() == 0
    root = restart(tree, root)
    tree.agent("node-1", [agg.port])
    with Client(root.query) as c:
        masks = wait_for(lambda: (m := c.call("masks", node="node-1")) and m["source"] == "control" and m,
                         timeout=30, what="the pending mask applied to the returned agent")
        assert masks["rules"] == ["10 node_load* U", "90 * drop"]
        wait_for(lambda: c.call("masks", node="node-1")["pending"] is None, what="the change confirmed")
    assert json.loads((tmp_path / "root" / "pending_masks.json").read_text()) == {}
