"""``clumon services``, ``clumon service start|stop|restart`` and ``clumon procs``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client

STATES = ("starting", "running", "backoff", "stopped", "exited", "fatal")
STYLE = {"running": "green", "starting": "cyan", "backoff": "yellow", "fatal": "red", "exited": "red",
         "stopped": "magenta"}


def _missing(result: dict) -> None:
    for key, what in (("down", "down"), ("timed_out", "no answer in time"), ("unknown", "unknown")):
        if result.get(key):
            print(f"{what}: {', '.join(result[key])}", file=sys.stderr)


def cmd_services(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("services", targets=a.node or None, service=a.glob, states=a.state or None)
    if a.json:
        return result
    rows = []
    for s in result["services"]:
        st = STYLE.get(s["state"])
        rows.append([s["node"], s["name"], f"[{st}]{s['state']}[/{st}]" if st else s["state"], R.since(s["since"]),
                     f"{s['count']}/{s['min']}" + ("" if s["managed"] else " (watched)"), str(s["restarts"]),
                     s.get("detail", "")])
    R.table(f"services ({len(rows)})", ["node", "service", "state", "since", "copies", "restarts", "detail"], rows)
    _missing(result)
    return result


def cmd_service(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("service", action=a.action, targets=[a.target], name=a.name, timeout=a.timeout * 0.9)
    if a.json:
        return result
    rows = [[node, r.get("state", "-") if "error" not in r else "-", r.get("error", "") or
             (f"stopped {r['stopped']}" if r.get("stopped") else "") + (f", killed {r['killed']}" if r.get("killed") else "")
             + (f" pid {r['pid']}" if r.get("pid") else "")]
            for node, r in sorted(result["nodes"].items())]
    R.table(f"{a.action} {a.name}", ["node", "state", "outcome"], rows)
    _missing(result)
    if any("error" in r for r in result["nodes"].values()) or result["timed_out"] or result["down"]:
        raise SystemExit(1)
    return result


def cmd_procs(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("procs", node=a.node, top=a.top)
    if a.json:
        return result
    R.table(f"{a.node}: top by CPU ({result['processes']} processes)", ["pid", "user", "name", "cpu", "rss", "cmdline"],
            [[str(p["pid"]), p["user"], p["name"], f"{p['cpu_ratio']:.2f}", R.num(p["rss_bytes"]), p["cmdline"][:60]]
             for p in result["top_cpu"]])
    R.table("top by memory", ["pid", "user", "name", "rss", "cpu", "cmdline"],
            [[str(p["pid"]), p["user"], p["name"], R.num(p["rss_bytes"]), f"{p['cpu_ratio']:.2f}", p["cmdline"][:60]]
             for p in result["top_memory"]])
    if result["flagged"]:
        R.table("flagged", ["kind", "pid", "user", "name", "why"],
                [[f["kind"], str(f["pid"]), f["user"], f["name"], f["reason"]] for f in result["flagged"]])
    return result


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("services", parents=[common], help="every node's watched services")
    s.add_argument("glob", nargs="?", default="*", help="service names (glob)")
    s.add_argument("--node", action="append", help="nodes (name, comma list or glob); repeatable")
    s.add_argument("--state", action="append", choices=STATES, help="only these states; repeatable")
    s = sub.add_parser("service", parents=[common], help="start, stop or restart a service on nodes")
    s.add_argument("action", choices=["start", "stop", "restart"])
    s.add_argument("target", help="node, comma list or glob ('rack-7/*')")
    s.add_argument("name", help="the service")
    s = sub.add_parser("procs", parents=[common], help="a node's top and flagged processes, fresh")
    s.add_argument("node")
    s.add_argument("--top", type=int, default=10)
    return {"services": cmd_services, "service": cmd_service, "procs": cmd_procs}
