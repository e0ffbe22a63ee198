"""``clumon mask show`` / ``clumon mask set``: the masks in force at agents.

A rule is one argument: ``NUMBER GLOB U`` (always passes), ``NUMBER GLOB B LOWER
UPPER`` (passes while LOWER <= value <= UPPER), ``NUMBER GLOB drop`` (never passes);
a series is judged by the lowest-numbered rule whose glob matches it."""

from __future__ import annotations

import argparse
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


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
            R.console().print(f"unknown (not set): {', '.join(result['unknown'])}")
        if result.get("pending"):
            # down, unreachable or no answer in time: the root sends it again while it waits
            R.console().print(f"pending (set when each is up again and confirms): {', '.join(result['pending'])}")
    return result


def _print_masks(node: str, m: dict) -> None:
    origin = "from the agent's config" if m.get("source") == "config" else f"set {R.when(m.get('set_at'))}"
    rows = [[r.split(None, 1)[0], r.split(None, 1)[1]] for r in m.get("rules", [])]
    R.table(f"masks of {node} ({origin}; min_change {m['min_change']:g}, min_change_abs {m['min_change_abs']:g}, "
           f"max_silence {m['max_silence']:g}s)", ["#", "rule"], rows or [["-", "(no rules: every series passes)"]])


RULES_HELP = """rules, one argument each:
  'NUMBER GLOB U'                  always passes (e.g. '10 node_uptime_seconds U')
  'NUMBER GLOB B LOWER UPPER'      passes while LOWER <= value <= UPPER (e.g. '20 node_load* B 0.5 1000')
  'NUMBER GLOB drop'               never passes (e.g. '90 node_cpu_ratio{cpu=* drop')
a series is judged by the lowest-numbered rule whose glob matches it (none: it passes);
what passes is then sent when it changed by more than --min-change, or after --max-silence"""


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("mask", parents=[common], help="masks in force on a node, or replace them")
    ms = s.add_subparsers(dest="mask_command", required=True)
    m = ms.add_parser("show", parents=[common], help="the masks in force on NODE")
    m.add_argument("node")
    m = ms.add_parser("set", parents=[common], epilog=RULES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                      help="replace the masks of a node, comma list, glob or aggregator's subtree")
    m.add_argument("target")
    m.add_argument("rules", nargs="*", metavar="RULE",
                   help="one argument per rule: 'NUMBER GLOB U', 'NUMBER GLOB B LOWER UPPER', 'NUMBER GLOB drop'")
    m.add_argument("--min-change", type=float, default=None, help="relative change that is sent (default 0.001)")
    m.add_argument("--min-change-abs", type=float, default=None, help="absolute change near zero (default 1e-9)")
    m.add_argument("--max-silence", type=float, default=None, help="resend unchanged values after this long")
    m.add_argument("--reset", action="store_true", help="go back to the masks of the agent's config")
    return {"mask": cmd_mask}
