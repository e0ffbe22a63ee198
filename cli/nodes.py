"""``clumon nodes``, ``tree``, ``latest`` and ``top``: the live view."""

from __future__ import annotations

import argparse
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client
from clumon.proto.liveness import STATES


def cmd_nodes(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("nodes", match=a.match, states=a.state or None)
    if not a.json:
        R.table("nodes", ["node", "role", "path", "state", "since", "last seen", "incarnation"],
               [[n["name"], n["role"], n["path"] or "-", R.styled(n["state"]), R.since(n["since"]),
                 R.age(n["last_seen"]), str(n["incarnation"] or "-")] for n in result])
    return result


def cmd_tree(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("tree")
    if not a.json:
        from rich.tree import Tree

        def label(e: dict) -> str:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(e.get("nodes_by_state", {}).items()))
            return f"{e['name']} ({e['role']}, {R.styled(e['state'])})" + (f" — {counts}" if counts and e["role"] != "agent" else "")

        def build(node: Any, e: dict) -> None:
            for ch in e["children"]:
                build(node.add(label(ch)), ch)

        t = Tree(label(result))
        build(t, result)
        R.console().print(t)
    return result


def cmd_latest(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("latest", node=a.node, series=a.series or None)
    if not a.json:
        R.table(f"latest values of {a.node} ({result['state']})", ["series", "value", "age"],
               [[k, R.num(v), R.age(ts)] for k, (v, ts) in result["values"].items()])
    return result


def cmd_top(c: Client, a: argparse.Namespace) -> Any:
    from clumon.cli import top
    if a.json:
        return c.call("overview", top=a.top)
    return top.run(c, a.interval, a.once, a.top)


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("nodes", parents=[common], help="every node with path, state, since, incarnation")
    s.add_argument("match", nargs="?", help="only nodes whose name or path matches this glob (rack-7/*)")
    s.add_argument("--state", action="append", choices=STATES,
                   help="only nodes in this state (repeat for several: --state down --state unreachable)")
    sub.add_parser("tree", parents=[common], help="the topology with per-tier health")
    s = sub.add_parser("latest", parents=[common], help="newest cached values of a node")
    s.add_argument("node")
    s.add_argument("series", nargs="*", help="series globs")
    s = sub.add_parser("top", parents=[common], help="a live full-screen view of the cluster (q quits)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    s.add_argument("--once", action="store_true", help="print one frame and exit")
    s.add_argument("--top", type=int, default=10, help="how many hottest nodes to list")
    return {"nodes": cmd_nodes, "tree": cmd_tree, "latest": cmd_latest, "top": cmd_top}
