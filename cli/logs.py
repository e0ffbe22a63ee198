"""``clumon logs``: stored log lines, by node glob, source, regex and time; ``--follow``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


def _printable(text: str) -> str:
    """Control characters (a binary line) shown escaped, not sent to the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\t\n" else f"\\x{ord(ch):02x}" for ch in text)


def _show(lines: list[dict], as_json: bool) -> None:
    for x in lines:
        if as_json:
            print(json.dumps(x, default=str), flush=True)
        else:
            print(f"{R.when(x['ts'])} {x['node']} {x['source']}: {_printable(x['line'])}", flush=True)


def cmd_logs(c: Client, a: argparse.Namespace) -> Any:
    args = dict(node=a.node, source=a.source, grep=a.grep, since=a.since, until=a.until, limit=a.limit)
    result = c.call("logs", **args)
    if not a.follow:
        if not a.json:
            _show(result["lines"], False)
            if result.get("truncated"):
                print(f"(the newest {a.limit} lines; --limit or --since for more)", file=sys.stderr)
        return result
    as_json = a.json
    _show(result["lines"], as_json)
    cursor = result["cursor"]
    a.json = False  # lines were printed as they came (one JSON object a line with --json)
    try:
        while True:
            time.sleep(a.interval)
            got = c.call("logs", **{**args, "until": None, "after": cursor, "limit": 100_000})
            _show(got["lines"], as_json)
            cursor = got["cursor"]
    except KeyboardInterrupt:
        return None


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("logs", parents=[common], help="stored log lines ([[log]] sources of the agents)")
    s.add_argument("--node", help="node name or glob (node-1*, rack-2-*)")
    s.add_argument("--source", help="the [[log]] source (e.g. messages)")
    s.add_argument("--grep", help="only lines matching this regex")
    s.add_argument("--since", type=R.duration, default=3600.0, help="how far back (e.g. 30s, 5m, 2h, 1d)")
    s.add_argument("--until", type=R.duration, default=None, help="up to this long ago")
    s.add_argument("--limit", type=int, default=200, help="at most this many lines (the newest)")
    s.add_argument("--follow", "-f", action="store_true", help="go on printing lines as they are stored")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between looks with --follow")
    return {"logs": cmd_logs}
