"""Chains of any depth: agent -> aggregator -> aggregator -> root, reads through them."""

from __future__ import annotations

from harness import wait_for

from clumon.cli.client import Client


def test_two_aggregator_tiers_paths_reads_and_nearest_cache(tree):
    root = tree.root()
    top = tree.aggregator("agg-top", [root.port])
    rack = tree.aggregator("agg-rack", [top.port])
    tree.agent("node-1", [rack.port])
    tree.agent("node-2", [rack.port])
    tree.agent("node-3", [top.port])
    with Client(root.query) as c:
        def nodes():
            got = {n["name"]: n for n in c.call("nodes")}
            return all(got.get(f"node-{i}", {}).get("state") == "up" for i in (1, 2, 3)) and got

        got = wait_for(nodes, what="three nodes up")
        assert got["node-1"]["path"] == "agg-top/agg-rack"
        assert got["node-3"]["path"] == "agg-top"
        assert got["agg-rack"]["path"] == "agg-top" and got["agg-rack"]["role"] == "aggregator"
        wait_for(lambda: "node_load1" in c.call("latest", node="node-1")["values"], what="latest of node-1")

        # a fresh read goes down two tiers to the agent
        live = c.call("read", targets=["node-1"], series=["node_load*"])
        part = live["nodes"]["node-1"]
        assert part["live"] is True
        assert set(part["values"]) == {"node_load1", "node_load5", "node_load15"}

        # with max_age the nearest cache answers (the top aggregator: every tier caches
        # its whole subtree), without going down to the agent
        cached = c.call("read", targets=["node-1"], series=["node_load1"], max_age=30)
        part = cached["nodes"]["node-1"]
        assert part["live"] is False and part.get("served_by") == "agg-top"
        assert set(part["values"]) == {"node_load1"}

        # a subtree glob reaches every node below the rack aggregator, and only those
        sub = c.call("read", targets=["agg-top/agg-rack/*"])
        assert set(sub["nodes"]) == {"node-1", "node-2"}
        assert not sub["unknown"] and not sub["timed_out"]

        # a comma list and an unknown name
        both = c.call("read", targets=["node-1,node-3,ghost"])
        assert set(both["nodes"]) == {"node-1", "node-3"} and both["unknown"] == ["ghost"]

        tree_view = c.call("tree")
        top_entry = next(ch for ch in tree_view["children"] if ch["name"] == "agg-top")
        assert top_entry["nodes_by_state"].get("up") == 3
        # the root is the top of the tree, never listed as its own child nor counted as a node
        assert tree_view["role"] == "root" and tree_view["since"]
        assert all(ch["role"] != "root" for ch in tree_view["children"])
        assert sum(tree_view["nodes_by_state"].values()) == 3
