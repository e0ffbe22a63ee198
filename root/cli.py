"""``clumon``: the command line — a client of the root's query socket, and ``demo``."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from clumon.proto.liveness import STATES
from clumon.root.client import DEFAULT_ENDPOINT, Client, ClientError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """'90', '90s', '5m', '2h', '1d' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 5m, 2h or 1d, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0.0, time.time() - ts)
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.0f}h"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _since(ts: float | None) -> str:
    """A time of today as HH:MM:SS, an older one with its date: keeps tables narrow."""
    if not ts:
        return "-"
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(ts))
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", time.localtime(ts))


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v)}"
    return f"{v:.6g}"


_STATE_STYLE = {"up": "green", "suspect": "yellow", "down": "red", "unreachable": "magenta", "restarted": "cyan"}


def _console():
    from rich.console import Console
    return Console()


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    _console().print(t)


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


# --- commands: each returns the result it printed (for --json) ----------------------


def cmd_nodes(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("nodes", match=a.match, states=a.state or None)
    if not a.json:
        _table("nodes", ["node", "role", "path", "state", "since", "last seen", "incarnation"],
               [[n["name"], n["role"], n["path"] or "-", _styled(n["state"]), _since(n["since"]),
                 _age(n["last_seen"]), str(n["incarnation"] or "-")] for n in result])
    return result


def cmd_tree(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("tree")
    if not a.json:
        from rich.tree import Tree

        def label(e: dict) -> str:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(e.get("nodes_by_state", {}).items()))
            return f"{e['name']} ({e['role']}, {_styled(e['state'])})" + (f" — {counts}" if counts and e["role"] != "agent" else "")

        def build(node: Any, e: dict) -> None:
            for ch in e["children"]:
                build(node.add(label(ch)), ch)

        t = Tree(label(result))
        build(t, result)
        _console().print(t)
    return result


def cmd_latest(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("latest", node=a.node, series=a.series or None)
    if not a.json:
        _table(f"latest values of {a.node} ({result['state']})", ["series", "value", "age"],
               [[k, _num(v), _age(ts)] for k, (v, ts) in result["values"].items()])
    return result


def cmd_series(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("series", node=a.node, series=a.series, since=a.since, until=a.until, step=a.step,
                    tier=a.tier)
    if a.json:
        return result
    pts = result["points"]
    title = f"{a.series} on {a.node} ({len(pts)} points, tier {result.get('tier', 'raw')})"
    if a.plot:
        plot(title, pts)
    elif result.get("tier", "raw") == "raw":
        _table(title, ["time", "value"], [[_when(p[0]), _num(p[1])] for p in pts])
    else:
        _table(title, ["bucket", "min", "avg", "max", "count"],
               [[_when(p["ts"]), _num(p["min"]), _num(p["avg"]), _num(p["max"]), str(p["count"])] for p in pts])
    return result


def plot(title: str, pts: list) -> None:
    """A terminal chart of raw points or rollup buckets (min/avg/max), against
    seconds before now (plotext's date axes differ between its releases)."""
    import plotext as plt

    now = time.time()
    plt.clear_figure()
    if not sys.stdout.isatty():
        plt.theme("clear")  # no colour codes in a pipe or a file
    plt.title(title)
    plt.xlabel("seconds before now")
    if pts and isinstance(pts[0], dict):
        xs = [p["ts"] - now for p in pts]
        for key, color in (("max", "red"), ("avg", "blue"), ("min", "green")):
            plt.plot(xs, [p[key] for p in pts], label=key, color=color)
    else:
        good = [p for p in pts if p[1] is not None]
        plt.plot([p[0] - now for p in good], [p[1] for p in good])
    width, height = shutil.get_terminal_size((100, 30))
    plt.plotsize(min(width, 160), max(12, min(height - 4, 30)))
    chart = plt.build()
    print(chart if sys.stdout.isatty() else plt.uncolorize(chart))


def cmd_summary(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("summary", series=a.series, since=a.since, until=a.until, by=a.by, tier=a.tier)
    if not a.json:
        rows = [[g or "(cluster)", _num(v.get("min")), _num(v.get("avg")), _num(v.get("max")), str(v.get("count"))]
                for g, v in sorted(result["groups"].items())]
        _table(f"{a.series} by {result['by']} (tier {result['tier']})", [result["by"], "min", "avg", "max", "samples"],
               rows)
    return result


def cmd_read(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("read", targets=[a.target], series=a.series or [], max_age=a.max_age)
    if not a.json:
        rows = []
        for node, part in sorted(result["nodes"].items()):
            for k, value in sorted(part["values"].items()):
                v, ts, *rest = value
                age = f"{rest[0]:.1f}s" if rest else _age(ts)
                live = rest[1] if len(rest) > 1 else part.get("live")
                rows.append([node, k, _num(v), age, "live" if live else "cached"])
        _table(f"read {a.target}", ["node", "series", "value", "age", "mode"], rows)
        for what in ("down", "unknown", "timed_out"):
            if result.get(what):
                _console().print(f"{what.replace('_', ' ')}: {', '.join(result[what])}")
    return result


def cmd_events(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("events", node=a.node, kind=a.kind, since=a.since, limit=a.limit)
    if not a.json:
        _table("events", ["time", "subject", "type", "message", "from"],
               [[_when(e["ts"]), e["subject"], e["type"], e["message"], e["source"]] for e in result])
    return result


def cmd_health(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("health")
    if not a.json:
        _table("root health", ["figure", "value"],
               [[k, json.dumps(v) if isinstance(v, dict) else _num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)]
                for k, v in result.items()])
    return result


def cmd_top(c: Client, a: argparse.Namespace) -> Any:
    from clumon.root import top
    if a.json:
        return c.call("overview", top=a.top)
    return top.run(c, a.interval, a.once, a.top)


def cmd_forget(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("forget", node=a.node)
    if not a.json:
        _console().print(f"forgot {a.node}")
    return result


def cmd_mask(c: Client, a: argparse.Namespace) -> Any:
    """``mask show NODE`` / ``mask set TARGET RULE...`` (each RULE one argument)."""
    if a.mask_command == "show":
        result = c.call("masks", node=a.node)
        if not a.json:
            _print_masks(a.node, result)
        return result
    result = c.call("set_mask", target=a.target, masks=a.rules, reset=a.reset or None,
                    min_change=a.min_change, min_change_abs=a.min_change_abs, max_silence=a.max_silence)
    if not a.json:
        for node, masks in sorted(result["in_force"].items()):
            _print_masks(node, masks)
        if result.get("unknown"):
            _console().print(f"unknown (not set): {', '.join(result['unknown'])}")
        if result.get("pending"):
            # down, unreachable or no answer in time: the root sends it again while it waits
            _console().print(f"pending (set when each is up again and confirms): {', '.join(result['pending'])}")
    return result


def _print_masks(node: str, m: dict) -> None:
    origin = "from the agent's config" if m.get("source") == "config" else f"set {_when(m.get('set_at'))}"
    rows = [[r.split(None, 1)[0], r.split(None, 1)[1]] for r in m.get("rules", [])]
    _table(f"masks of {node} ({origin}; min_change {m['min_change']:g}, min_change_abs {m['min_change_abs']:g}, "
           f"max_silence {m['max_silence']:g}s)", ["#", "rule"], rows or [["-", "(no rules: every series passes)"]])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clumon", description="Clumon+ command line")
    p.add_argument("--endpoint", default=os.environ.get("CLUMON_ENDPOINT", DEFAULT_ENDPOINT),
                   help=f"root query endpoint (default {DEFAULT_ENDPOINT}, or $CLUMON_ENDPOINT)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the root")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run a root, 2 aggregators and 4 agents on localhost")
    d.add_argument("--dir", default="clumon-demo", help="working directory (database, logs, state)")
    d.add_argument("--base-port", type=int, default=7400)
    d.add_argument("--aggregators", type=int, default=2)
    d.add_argument("--agents", type=int, default=4)
    d.add_argument("--duration", type=duration, default=None, help="stop by itself after this long")

    s = sub.add_parser("simulate", help="impersonate many agents from a few processes (size a tree)")
    s.add_argument("--agents", type=int, required=True, help="simulated agents (nodes sim-0 ...)")
    s.add_argument("--series", type=int, default=150, help="series per agent")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between DATA frames of an agent")
    s.add_argument("--parent", nargs="+", required=True, metavar="ENDPOINT",
                   help="parent endpoints in failover order")
    s.add_argument("--processes", type=int, default=2, help="worker processes")
    s.add_argument("--duration", type=duration, default=None, help="stop by itself after this long")
    s.add_argument("--prefix", default="sim-", help="node names are PREFIX<i>")
    s.add_argument("--first", type=int, default=0, help="index of the first agent")
    s.add_argument("--ramp", type=float, default=None, help="seconds over which agents connect (default: interval)")
    s.add_argument("--stats-interval", type=float, default=10.0, help="seconds between JSON stats lines")
    s.add_argument("--histogram", action="store_true", help="add the ack latency histogram to stats lines")
    s.add_argument("--heartbeat-interval", type=float, default=5.0)
    s.add_argument("--failover-after", type=float, default=15.0)
    s.add_argument("--drain-timeout", type=float, default=10.0, help="on stop, wait this long for acks")

    s = sub.add_parser("nodes", help="every node with path, state, since, incarnation")
    s.add_argument("match", nargs="?", help="only nodes whose name or path matches this glob (rack-7/*)")
    s.add_argument("--state", action="append", choices=STATES,
                   help="only nodes in this state (repeat for several: --state down --state unreachable)")
    sub.add_parser("tree", help="the topology with per-tier health")
    s = sub.add_parser("latest", help="newest cached values of a node")
    s.add_argument("node")
    s.add_argument("series", nargs="*", help="series globs")
    s = sub.add_parser("series", help="stored points of one series")
    s.add_argument("node")
    s.add_argument("series")
    s.add_argument("--since", type=duration, default=3600.0, help="how far back (e.g. 5m, 2h)")
    s.add_argument("--until", type=duration, default=None, help="up to this long ago")
    s.add_argument("--step", type=duration, default=None, help="bucket width (picks the tier)")
    s.add_argument("--tier", choices=["raw", "1m", "30m", "2h", "1d"], help="read this tier")
    s.add_argument("--plot", action="store_true", help="draw a terminal chart")
    s = sub.add_parser("summary", help="one series across nodes, from the rollups")
    s.add_argument("series")
    s.add_argument("--by", choices=["cluster", "aggregator"], default="cluster")
    s.add_argument("--since", type=duration, default=3600.0)
    s.add_argument("--until", type=duration, default=None)
    s.add_argument("--tier", choices=["1m", "30m", "2h", "1d"])
    s = sub.add_parser("read", help="fresh read through the tree")
    s.add_argument("target", help="node, comma list or glob")
    s.add_argument("series", nargs="*", help="series globs")
    s.add_argument("--max-age", type=float, default=0.0, help="accept a snapshot this young")
    s = sub.add_parser("events", help="stored events")
    s.add_argument("--node")
    s.add_argument("--kind")
    s.add_argument("--since", type=duration, default=86400.0)
    s.add_argument("--limit", type=int, default=200)
    sub.add_parser("health", help="the root's own figures")
    s = sub.add_parser("top", help="a live full-screen view of the cluster")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    s.add_argument("--once", action="store_true", help="print one frame and exit")
    s.add_argument("--top", type=int, default=10, help="how many hottest nodes to list")
    s = sub.add_parser("mask", help="masks in force on a node, or replace them")
    ms = s.add_subparsers(dest="mask_command", required=True)
    m = ms.add_parser("show", help="the masks in force on NODE")
    m.add_argument("node")
    m = ms.add_parser("set", help="replace the masks of a node, comma list, glob or aggregator's subtree")
    m.add_argument("target")
    m.add_argument("rules", nargs="*", metavar="RULE",
                   help="one argument per rule: 'NUMBER GLOB U', 'NUMBER GLOB B LOWER UPPER', 'NUMBER GLOB drop'")
    m.add_argument("--min-change", type=float, default=None, help="relative change that is sent (default 0.001)")
    m.add_argument("--min-change-abs", type=float, default=None, help="absolute change near zero (default 1e-9)")
    m.add_argument("--max-silence", type=float, default=None, help="resend unchanged values after this long")
    m.add_argument("--reset", action="store_true", help="go back to the masks of the agent's config")
    s = sub.add_parser("forget", help="drop a decommissioned node from the live view")
    s.add_argument("node")
    return p


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Any]] = {
    "nodes": cmd_nodes, "tree": cmd_tree, "latest": cmd_latest, "series": cmd_series,
    "read": cmd_read, "events": cmd_events, "health": cmd_health, "forget": cmd_forget,
    "top": cmd_top, "summary": cmd_summary,
    "mask": cmd_mask,
}


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.command == "demo":
        from clumon.root import demo
        return demo.run(Path(a.dir), a.base_port, a.aggregators, a.agents, duration=a.duration)
    if a.command == "simulate":
        from clumon.agent import simulate
        return simulate.run(simulate.SimConfig(
            agents=a.agents, series=a.series, interval=a.interval, parents=tuple(a.parent),
            processes=a.processes, duration=a.duration, prefix=a.prefix, first=a.first, ramp=a.ramp,
            stats_interval=a.stats_interval, histogram=a.histogram, drain_timeout=a.drain_timeout,
            heartbeat_interval=a.heartbeat_interval, failover_after=a.failover_after))
    try:
        with Client(a.endpoint, a.timeout) as c:
            result = COMMANDS[a.command](c, a)
    except ClientError as exc:
        print(f"clumon: {exc}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
