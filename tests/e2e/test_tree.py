"""End to end: a root, two aggregators and four agents as separate processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from harness import wait_for

from clumon.cli.client import Client

#: no change suppression: every DATA frame carries every series (these tests count points)
UNSUPPRESSED = {"max_silence": 0.0}


def cli(query: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint", query, *args],
                          capture_output=True, text=True, timeout=30)


def nodes_json(query: str) -> dict[str, dict]:
    out = cli(query, "--json", "nodes")
    assert out.returncode == 0, out.stderr
    return {n["name"]: n for n in json.loads(out.stdout)}


def test_four_agents_through_two_aggregators_reach_sqlite(tree, tmp_path):
    root = tree.root()
    aggs = [tree.aggregator(f"agg-{i}", [root.port]) for i in (1, 2)]
    agents = [tree.agent(f"node-{n}", [aggs[(n - 1) // 2].port], masks=UNSUPPRESSED) for n in range(1, 5)]

    def all_up():
        nodes = nodes_json(root.query)
        return all(nodes.get(f"node-{n}", {}).get("state") == "up" for n in range(1, 5)) and nodes

    nodes = wait_for(all_up, what="four agents up")
    assert nodes["node-1"]["parent"] == "agg-1" and nodes["node-4"]["parent"] == "agg-2"
    assert nodes["agg-1"]["role"] == "aggregator"

    db = tmp_path / "clumon.db"

    def stored_per_node():
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT node, count(*) FROM frames WHERE kind = 2 GROUP BY node").fetchall()
        counts = dict(rows)
        return all(counts.get(f"node-{n}", 0) >= 2 for n in range(1, 5)) and counts

    wait_for(stored_per_node, what="DATA frames of every agent in SQLite")

    with Client(root.query) as c:
        latest = c.call("latest", node="node-1")
        assert "node_load1" in latest["values"]
        # every tier's own health is stored like a node's: the agent's too
        own = wait_for(lambda: (v := c.call("latest", node="node-1")["values"]).get("clumon_agent_frames_out_total") and v,
                       what="the agent's own health series")
        assert own["clumon_agent_resident_bytes"][0] > 1 << 20
        # a point a tick (the HELLO at start sends no value twice): wait for the second
        series = wait_for(lambda: (r := c.call("series", node="node-1", series="node_load1", since=300))
                          and len(r["points"]) >= 2 and r, what="two stored points of node_load1")
        assert all(isinstance(p[1], float) for p in series["points"])

    codes = tree.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    for d in [root, *aggs, *agents]:
        assert d.proc.poll() is not None


def test_cli_latest_and_series_print_tables(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port], masks=UNSUPPRESSED)
    wait_for(lambda: nodes_json(root.query).get("node-1"), what="node-1 known")
    wait_for(lambda: "node_load1" in cli(root.query, "latest", "node-1").stdout, what="latest table")
    out = wait_for(lambda: (r := cli(root.query, "series", "node-1", "node_load1", "--since", "5m")).returncode == 0
                   and r.stdout.count("20") >= 2 and r, what="series table")
    assert "node_load1 on node-1" in out.stdout
    nodes = cli(root.query, "nodes")
    assert nodes.returncode == 0 and "node-1" in nodes.stdout and "agg-1" in nodes.stdout
    # filters: by glob over names or paths, and by state
    under = json.loads(cli(root.query, "--json", "nodes", "agg-1/*").stdout)
    assert [n["name"] for n in under] == ["node-1"]
    assert json.loads(cli(root.query, "--json", "nodes", "--state", "down", "--state", "unreachable").stdout) == []
    assert {n["name"] for n in json.loads(cli(root.query, "--json", "nodes", "--state", "up").stdout)} >= {"node-1", "agg-1"}
    assert cli(root.query, "nodes", "--state", "dead").returncode == 2
    health = cli(root.query, "health")
    assert "e+" not in health.stdout  # integers (incarnation, counters) print whole


def test_unknown_op_and_bad_args_get_error_values(tree):
    root = tree.root()
    with Client(root.query) as c:
        for op, args, code in [
            ("no_such_op", {}, "unknown_op"),
            ("latest", {}, "bad_args"),
            ("latest", {"node": 42}, "bad_args"),
            ("latest", {"node": "ghost"}, "unknown_node"),
            ("series", {"node": "ghost", "series": "x", "since": "yesterday"}, "bad_args"),
            ("events", {"limit": -1}, "bad_args"),
            ("nodes", {"states": ["dead"]}, "bad_args"),
        ]:
            try:
                c.call(op, **args)
            except Exception as exc:
                assert getattr(exc, "code", None) == code, (op, args, exc)
            else:
                raise AssertionError(f"{op} {args} succeeded")
    out = cli(root.query, "latest", "ghost")
    assert out.returncode == 1 and "unknown_node" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_sync_read_reaches_the_agent_through_an_aggregator(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    wait_for(lambda: nodes_json(root.query).get("node-1"), what="node-1 known")
    with Client(root.query) as c:
        result = c.call("read", targets=["node-1", "ghost"], max_age=0)
    assert result["unknown"] == ["ghost"]
    part = result["nodes"]["node-1"]
    assert part["live"] is True and "node_load1" in part["values"]


def test_series_plot_draws_a_terminal_chart(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    wait_for(lambda: len(Client(root.query).call("series", node="node-1", series="node_load1", since=60)["points"]) >= 3,
             what="three stored points")
    out = cli(root.query, "series", "node-1", "node_load1", "--since", "5m", "--plot")
    assert out.returncode == 0, out.stderr
    assert "node_load1 on node-1" in out.stdout
    assert "\x1b[" not in out.stdout, "no colour codes in a pipe"
    assert "seconds before now" in out.stdout
    markers = {ch for ch in out.stdout if ord(ch) > 127} - set("─│┌┐└┘┼┬┴├┤")
    assert markers, f"no points drawn: {out.stdout[-800:]}"


def test_summary_and_rollup_tiers_from_a_running_root(tree):
    root = tree.root(rollup_flush=1.0, maintain_interval=0.5)
    agg = tree.aggregator("agg-1", [root.port])
    # every value every second: node_load1 barely moves, so under the default masks it
    # is sent every 30 s and a minute's bucket may hold too few samples
    tree.agent("node-1", [agg.port], masks=UNSUPPRESSED)
    tree.agent("node-2", [agg.port], masks=UNSUPPRESSED)
    with Client(root.query) as c:
        def summary():
            r = c.call("summary", series="node_load1", since=600, by="aggregator")
            return r["groups"].get("agg-1", {}).get("count", 0) >= 4 and r

        # a 1-minute bucket is written once its minute has closed: up to two minutes
        r = wait_for(summary, timeout=150, what="aggregator rollups of node_load1")
        assert r["tier"] == "1m" and r["by"] == "aggregator"
        g = r["groups"]["agg-1"]
        assert g["min"] <= g["avg"] <= g["max"]
        cluster = c.call("summary", series="node_load1", since=600)
        assert cluster["groups"][""]["count"] >= g["count"]
        one_min = c.call("series", node="node-1", series="node_load1", since=600, tier="1m")
        assert one_min["tier"] == "1m" and one_min["points"] and {"min", "max", "avg", "count"} <= set(one_min["points"][0])
        # a long range picks a coarse tier by itself
        assert c.call("series", node="node-1", series="node_load1", since=30 * 86400)["tier"] != "raw"
    out = cli(root.query, "summary", "node_load1", "--by", "aggregator", "--since", "10m")
    assert out.returncode == 0 and "agg-1" in out.stdout


def test_forget_drops_a_decommissioned_node_from_the_live_view(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    agent = tree.agent("node-1", [agg.port])
    tree.agent("node-2", [agg.port])
    wait_for(lambda: {"node-1", "node-2"} <= set(nodes_json(root.query)), what="both nodes")
    # a node that is up is not forgotten: its next frame would bring it back
    refused = cli(root.query, "forget", "node-2")
    assert refused.returncode == 1 and "node_alive" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert "node-2" in nodes_json(root.query)
    assert agent.stop() == 0  # decommissioned: forgotten before its parent has even noticed (--force)
    out = cli(root.query, "forget", "node-1", "--force")
    assert out.returncode == 0, out.stderr
    assert "node-1" not in nodes_json(root.query)
    with Client(root.query) as c:
        try:
            c.call("latest", node="node-1")
        except Exception as exc:
            assert getattr(exc, "code", "") == "unknown_node"
        else:
            raise AssertionError("a forgotten node still has a latest view")
        assert c.call("events", node="node-1"), "its history stays"
    again = cli(root.query, "forget", "node-1")
    assert again.returncode == 1 and "unknown_node" in again.stderr
    # its aggregator reports it down later (down_after 3 s): that does not bring it back
    wait_for(lambda: any(e["attrs"].get("new") == "down" for e in Client(root.query).call("events", node="node-1")),
             what="the aggregator's down event")
    assert "node-1" not in nodes_json(root.query)
