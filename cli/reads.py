"""``clumon read``: a fresh read through the tree."""

from __future__ import annotations

import argparse
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


def cmd_read(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("read", targets=[a.target], series=a.series or [], max_age=a.max_age)
    if not a.json:
        rows = []
        for node, part in sorted(result["nodes"].items()):
            for k, value in sorted(part["values"].items()):
                v, ts, *rest = value
                age = f"{rest[0]:.1f}s" if rest else R.age(ts)
                live = rest[1] if len(rest) > 1 else part.get("live")
                rows.append([node, k, R.num(v), age, "live" if live else "cached"])
        R.table(f"read {a.target}", ["node", "series", "value", "age", "mode"], rows)
        for what in ("down", "unknown", "timed_out"):
            if result.get(what):
                R.console().print(f"{what.replace('_', ' ')}: {', '.join(result[what])}")
    return result


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("read", parents=[common], help="fresh read through the tree")
    s.add_argument("target", help="node, comma list or glob")
    s.add_argument("series", nargs="*", help="series globs")
    s.add_argument("--max-age", type=float, default=0.0, help="accept a snapshot this young")
    return {"read": cmd_read}
