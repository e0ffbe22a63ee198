"""``clumon``: the command line — a client of the root's query socket, ``demo`` and
``simulate``.

Each family of commands is a module with its handlers and an ``add_parsers``;
this module assembles the parser and dispatches by an explicit table. The common
options (``--json``, ``--endpoint``, ``--timeout``) are taken before or after the
subcommand, as users type them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from clumon.cli import admin, alerts, history, logs, masks, nodes, reads, sched, security, watch
from clumon.cli.client import DEFAULT_ENDPOINT, Client, ClientError
from clumon.cli.render import duration
from clumon.proto import __version__

FAMILIES = (nodes, history, logs, reads, masks, admin, sched, alerts, watch, security)

Command = Callable[[Client, argparse.Namespace], Any]


def _common_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes; after the subcommand they leave the
    top-level value alone unless given (``SUPPRESS``)."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument("--endpoint", default=d(os.environ.get("CLUMON_ENDPOINT", DEFAULT_ENDPOINT)),
                   help=f"root query endpoint (default {DEFAULT_ENDPOINT}, or $CLUMON_ENDPOINT)")
    p.add_argument("--timeout", type=float, default=d(10.0), help="seconds to wait for the root")
    p.add_argument("--json", action="store_true", default=d(False), help="print the result as JSON")
    p.add_argument("--key", default=d(None), help="your CurveZMQ secret key file (NAME.key_secret; or $CLUMON_KEY, "
                   "or the one in ~/.config/clumon/) for a root with keys on")
    p.add_argument("--server-key", default=d(None), help="the root's public key file (or $CLUMON_SERVER_KEY, "
                   "or root.key beside your key)")


def parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    """The parser and the command table."""
    p = argparse.ArgumentParser(prog="clumon", description="Clumon+ command line")
    p.add_argument("--version", action="version", version=f"clumon {__version__}")
    _common_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

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
    s.add_argument("--node-series", action="store_true",
                   help="name four gauges as the agent does (CPU, memory, load1): the overview's hottest nodes")
    s.add_argument("--heartbeat-interval", type=float, default=5.0)
    s.add_argument("--failover-after", type=float, default=15.0)
    s.add_argument("--drain-timeout", type=float, default=10.0, help="on stop, wait this long for acks")
    s.add_argument("--keys", default="", metavar="DIR",
                   help="CurveZMQ: the agents' secret keys, DIR/NAME.key_secret for each simulated node")
    s.add_argument("--parent-key", nargs="+", default=(), metavar="FILE",
                   help="with --keys: the parent's public key file (PARENT.key), or one per --parent")

    commands: dict[str, Command] = {}
    for family in FAMILIES:
        commands.update(family.add_parsers(sub, common))
    return p, commands


def main(argv: list[str] | None = None) -> int:
    p, commands = parser()
    a = p.parse_args(argv)
    if a.command is None:
        p.print_help()
        return 0
    if a.command == "demo":
        from clumon.cli import demo
        return demo.run(Path(a.dir), a.base_port, a.aggregators, a.agents, duration=a.duration)
    if a.command == "simulate":
        from clumon.cli import simulate
        return simulate.run(simulate.SimConfig(
            agents=a.agents, series=a.series, interval=a.interval, parents=tuple(a.parent),
            processes=a.processes, duration=a.duration, prefix=a.prefix, first=a.first, ramp=a.ramp,
            stats_interval=a.stats_interval, histogram=a.histogram, drain_timeout=a.drain_timeout,
            heartbeat_interval=a.heartbeat_interval, failover_after=a.failover_after,
            keys=a.keys, parent_keys=tuple(a.parent_key), node_series=a.node_series))
    if a.command == "rules" and a.action == "check":
        if not a.file:
            p.error("rules check needs the FILE to check")
        return alerts.check_rules(a.file, a.json)
    if a.command == "keys" and a.action == "token":
        return security.keys_token(a.name, a.dir, a.append, a.json)
    if a.command == "keys":
        return security.keys_gen(a.name, a.dir, a.json)
    try:
        with Client(a.endpoint, a.timeout, key=a.key, server_key=a.server_key) as c:
            result = commands[a.command](c, a)
    except ClientError as exc:
        print(f"clumon: {exc}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
