"""``clumon-agent``: the per-node monitoring agent."""

from __future__ import annotations

import argparse
import sys

from clumon.proto.config import ConfigError, load

#: Sockets in the agent's zmq context (it uses at most three).
AGENT_MAX_SOCKETS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clumon-agent", description="Clumon+ node agent")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--name", help="node name (default: host name)")
    parser.add_argument("--parent", action="append", help="parent endpoint (repeat for failover order)")
    parser.add_argument("--state-dir", help="state directory (spool, masks)")
    args = parser.parse_args(argv)

    from clumon.agent.config import AgentConfig

    overrides = {"name": args.name, "state_dir": args.state_dir,
                 "parents": args.parent if args.parent else None}
    try:
        cfg = load(AgentConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"clumon-agent: config error: {exc}", file=sys.stderr)
        return 2

    from clumon.agent.service import Agent
    from clumon.proto import runtime, transport

    def start(stop):
        # A DEALER, and a probe with its monitor while failed over: libzmq's table
        # for the daemons' 65,536 sockets alone would be ~0.75 MiB of the agent's RSS.
        ctx = transport.make_context(AGENT_MAX_SOCKETS)
        return Agent(cfg, ctx).serve(stop)

    return runtime.run(start, cfg.log_level)


if __name__ == "__main__":
    sys.exit(main())
