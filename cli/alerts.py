"""``clumon alerts``, ``clumon silence add|list|expire`` and ``clumon rules check|reload``."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client

STYLE = {"firing": "red", "pending": "yellow", "resolved": "green"}


def cmd_alerts(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("alerts", state=a.state, since=a.since)
    if a.json:
        return result
    rows = []
    for x in result["alerts"]:
        st = STYLE.get(x["state"])
        state = f"[{st}]{x['state']}[/{st}]" if st else x["state"]
        labels = " ".join(f"{k}={v}" for k, v in sorted(x["labels"].items()) if k not in ("alertname", "node"))
        rows.append([state, x["labels"].get("alertname", x["rule"]), x["labels"].get("node", ""),
                     R.since(x.get("fired_at") or x["started"]), R.since(x.get("resolved_at")),
                     x["annotations"].get("summary", ""), labels, x.get("muted", "") or ""])
    R.table(f"alerts ({len(rows)})", ["state", "alert", "node", "since", "resolved", "summary", "labels", "muted"],
            rows)
    if result.get("silences"):
        cmd_silence_print(result["silences"])
    return result


def cmd_silence_print(silences: list[dict]) -> None:
    R.table("silences in force", ["id", "matchers", "until", "by", "reason"],
            [[str(s["id"]), " ".join(s["matchers"]), R.when(s["ends"]), s["created_by"], s["reason"]]
             for s in silences])


def cmd_silence(c: Client, a: argparse.Namespace) -> Any:
    if a.action == "add":
        if not a.matchers:
            raise SystemExit("clumon: silence add needs at least one MATCHER (label=value, label=~regex)")
        result = c.call("silence", action="add", matchers=a.matchers, duration=a.duration, reason=a.reason,
                        by=_who())
        if not a.json:
            print(f"silence {result['id']} until {R.when(result['ends'])}: {' '.join(result['matchers'])} "
                  f"({result['matching_alerts']} alerts match now)")
        return result
    if a.action == "expire":
        if len(a.matchers) != 1 or not a.matchers[0].isdigit():
            raise SystemExit("clumon: silence expire takes one silence ID (see clumon silence list)")
        result = c.call("silence", action="expire", id=int(a.matchers[0]))
        if not a.json:
            print(f"silence {result['expired']} expired")
        return result
    result = c.call("silence", action="list")
    if not a.json:
        cmd_silence_print(result)
    return result


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""


def cmd_rules(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("rules_reload")
    if not a.json:
        print(f"rules reloaded: {result['rules']} rules, {result['receivers']} receivers, {result['routes']} routes")
    return result


def check_rules(path: str, as_json: bool) -> int:
    """``clumon rules check FILE``: offline, no root needed."""
    from clumon.root.alerts.rules import RulesError, load
    try:
        cfg = load(path)
    except RulesError as exc:
        print(f"clumon: {exc}", file=sys.stderr)
        return 1
    if as_json:
        import json
        print(json.dumps({"rules": [r.name for r in cfg.rules], "receivers": sorted(cfg.receivers),
                          "routes": len(cfg.routes)}))
    else:
        print(f"{path}: ok, {len(cfg.rules)} rules, {len(cfg.receivers)} receivers, {len(cfg.routes)} routes")
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("alerts", parents=[common], help="alerts pending, firing and recently resolved")
    s.add_argument("--state", choices=["pending", "firing", "resolved"])
    s.add_argument("--since", type=R.duration, default=None, help="also those resolved in this span (e.g. 1d)")
    s = sub.add_parser("silence", parents=[common], help="silence alerts: add MATCHER… --for 2h, list, expire ID")
    s.add_argument("action", choices=["add", "list", "expire"])
    s.add_argument("matchers", nargs="*", metavar="MATCHER", help="label=value, label!=value, label=~regex (add); ID (expire)")
    s.add_argument("--for", dest="duration", type=R.duration, default=7200.0, help="how long (default 2h)")
    s.add_argument("--reason", default="", help="why (shown in clumon alerts)")
    s = sub.add_parser("rules", parents=[common], help="alert rules: check FILE offline, reload the root's")
    s.add_argument("action", choices=["check", "reload"])
    s.add_argument("file", nargs="?", help="the alerts file (check)")
    return {"alerts": cmd_alerts, "silence": cmd_silence, "rules": cmd_rules}
