"""``clumon-aggregator``: one per rack, chainable."""

from __future__ import annotations

import argparse
import sys

from clumon.proto.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clumon-aggregator", description="Clumon+ rack aggregator")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--name", help="aggregator name (default: host name)")
    parser.add_argument("--listen", help="endpoint children connect to (default tcp://*:7400)")
    parser.add_argument("--parent", action="append", help="parent endpoint (repeat for failover order)")
    parser.add_argument("--state-dir", help="state directory")
    args = parser.parse_args(argv)

    from clumon.aggregator.config import AggregatorConfig

    overrides = {"name": args.name, "listen": args.listen, "state_dir": args.state_dir,
                 "parents": args.parent if args.parent else None}
    try:
        cfg = load(AggregatorConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"clumon-aggregator: config error: {exc}", file=sys.stderr)
        return 2

    from clumon.aggregator.service import Aggregator
    from clumon.proto import runtime, transport
    from clumon.proto.statefile import StateDirError, lock_state_dir

    # the port first, then the state directory (its spool) is ours
    try:
        runtime.check_ports((cfg.listen,))
        state_lock = lock_state_dir(cfg.state_dir)  # noqa: F841 - held for the process lifetime
    except (runtime.PortInUse, StateDirError) as exc:
        print(f"clumon-aggregator: {exc}", file=sys.stderr)
        return 2

    def start(stop):
        return Aggregator(cfg, transport.make_context()).serve(stop)

    return runtime.run(start, cfg.log_level)


if __name__ == "__main__":
    sys.exit(main())
