"""``clumon-root``: the site's root — SQL storage and the query socket."""

from __future__ import annotations

import argparse
import sys

from clumon.proto.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clumon-root", description="Clumon+ site root")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--listen", help="endpoint children connect to (default tcp://*:7400)")
    parser.add_argument("--query", help="endpoint clients query (default tcp://*:7401)")
    parser.add_argument("--http", help="host:port of the pages, the API and /metrics (default 127.0.0.1:7402; "
                        "'' disables)")
    parser.add_argument("--metrics", help="the old name of --http")
    parser.add_argument("--database", help="SQLAlchemy URL (default sqlite:////var/lib/clumon/root/clumon.db)")
    parser.add_argument("--state-dir", help="state directory")
    args = parser.parse_args(argv)

    from clumon.root.config import RootConfig

    overrides = {"listen": args.listen, "query": args.query, "http": args.http, "metrics": args.metrics,
                 "database": args.database, "state_dir": args.state_dir}
    try:
        cfg = load(RootConfig, args.config, overrides)
    except ConfigError as exc:
        print(f"clumon-root: config error: {exc}", file=sys.stderr)
        return 2

    if cfg.alerts:  # checked before anything starts: a bad file is one line and exit 2
        from clumon.root.alerts.rules import RulesError, load as load_rules
        try:
            load_rules(cfg.alerts)
        except RulesError as exc:
            print(f"clumon-root: config error: key 'alerts': {exc}", file=sys.stderr)
            return 2

    from clumon.proto import runtime, transport
    from clumon.proto.statefile import StateDirError, lock_state_dir
    from clumon.root import lastrun
    from clumon.root.service import Root, history_config, prepare_database
    from clumon.root.storage import Store, StoreUnavailable

    # Ports first, then the state directory, then the database and the marker: a
    # second root started by mistake stops at once and leaves the first one's alone.
    try:
        runtime.check_ports((cfg.listen, cfg.query), cfg.http_address)
        state_lock = lock_state_dir(cfg.state_dir)  # noqa: F841 - held for the process lifetime
    except (runtime.PortInUse, StateDirError) as exc:
        print(f"clumon-root: {exc}", file=sys.stderr)
        return 2
    try:
        prepare_database(cfg.database)
        store = Store(cfg.database, history=history_config(cfg), log_retention=cfg.log_retention)
    except ImportError as exc:
        print(f"clumon-root: config error: key 'database': no driver for {cfg.database}: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, OSError) as exc:
        print(f"clumon-root: cannot open database {cfg.database}: {exc}", file=sys.stderr)
        return 1

    # The writer thread holds the GIL through long SQL batches; a short switch
    # interval lets the loop answer reads in between.
    sys.setswitchinterval(0.001)

    store.start_compactor(cfg.maintain_interval)  # beside the writer thread; close() stops it
    unclean = lastrun.begin(cfg.state_dir, cfg.name)

    def start(stop):
        return Root(cfg, transport.make_context(), store, (unclean,) if unclean else ()).serve(stop)

    try:
        return runtime.run(start, cfg.log_level)
    finally:
        if store.close():
            lastrun.end(cfg.state_dir)


if __name__ == "__main__":
    sys.exit(main())
