"""``clumon series``, ``summary`` and ``events``: what the database holds."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


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
        R.table(title, ["time", "value"], [[R.when(p[0]), R.num(p[1])] for p in pts])
    else:
        R.table(title, ["bucket", "min", "avg", "max", "count"],
               [[R.when(p["ts"]), R.num(p["min"]), R.num(p["avg"]), R.num(p["max"]), str(p["count"])] for p in pts])
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
        rows = [[g or "(cluster)", R.num(v.get("min")), R.num(v.get("avg")), R.num(v.get("max")), str(v.get("count"))]
                for g, v in sorted(result["groups"].items())]
        R.table(f"{a.series} by {result['by']} (tier {result['tier']})", [result["by"], "min", "avg", "max", "samples"],
               rows)
    return result


def cmd_events(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("events", node=a.node, kind=a.kind, since=a.since, limit=a.limit)
    if not a.json:
        R.table("events", ["time", "subject", "type", "message", "from"],
               [[R.when(e["ts"]), e["subject"], e["type"], e["message"], e["source"]] for e in result])
    return result


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("series", parents=[common], help="stored points of one series")
    s.add_argument("node")
    s.add_argument("series")
    s.add_argument("--since", type=R.duration, default=3600.0, help="how far back (e.g. 5m, 2h)")
    s.add_argument("--until", type=R.duration, default=None, help="up to this long ago")
    s.add_argument("--step", type=R.duration, default=None, help="bucket width (picks the tier)")
    s.add_argument("--tier", choices=["raw", "1m", "30m", "2h", "1d"], help="read this tier")
    s.add_argument("--plot", action="store_true", help="draw a terminal chart")
    s = sub.add_parser("summary", parents=[common], help="one series across nodes, from the rollups")
    s.add_argument("series")
    s.add_argument("--by", choices=["cluster", "aggregator"], default="cluster")
    s.add_argument("--since", type=R.duration, default=3600.0)
    s.add_argument("--until", type=R.duration, default=None)
    s.add_argument("--tier", choices=["1m", "30m", "2h", "1d"])
    s = sub.add_parser("events", parents=[common], help="stored events")
    s.add_argument("--node")
    s.add_argument("--kind")
    s.add_argument("--since", type=R.duration, default=86400.0)
    s.add_argument("--limit", type=int, default=200)
    return {"series": cmd_series, "summary": cmd_summary, "events": cmd_events}
