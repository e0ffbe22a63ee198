"""``clumon health`` and ``clumon forget``: the root itself and its live view."""

from __future__ import annotations

import argparse
import json
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


def cmd_health(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("health")
    if not a.json:
        R.table("root health", ["figure", "value"],
               [[k, json.dumps(v) if isinstance(v, dict) else R.num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)]
                for k, v in result.items()])
    return result


def cmd_forget(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("forget", node=a.node, force=a.force or None)
    if not a.json:
        R.console().print(f"forgot {a.node}")
    return result


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    sub.add_parser("health", parents=[common], help="the root's own figures")
    s = sub.add_parser("forget", parents=[common], help="drop a decommissioned node from the live view")
    s.add_argument("node")
    s.add_argument("--force", action="store_true", help="even if it is up (it comes back with its next frame)")
    return {"health": cmd_health, "forget": cmd_forget}
