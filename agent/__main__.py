"""``clumon-agent``: the per-node monitoring agent."""

from __future__ import annotations

import os
import sys

from clumon.agent import notls

#: Sockets in the agent's zmq context (it uses at most three).
AGENT_MAX_SOCKETS = 64

USAGE = """usage: clumon-agent [-h] [--config FILE] [--name NAME] [--parent ENDPOINT]... [--state-dir DIR]

Clumon+ node agent

options:
  -h, --help          show this help message and exit
  --config FILE       TOML configuration file
  --name NAME         node name (default: host name)
  --parent ENDPOINT   parent endpoint (repeat for failover order)
  --state-dir DIR     state directory (spool, masks)"""

#: option -> (key in the result, repeatable)
_OPTIONS = {"--config": ("config", False), "--name": ("name", False),
            "--parent": ("parent", True), "--state-dir": ("state_dir", False)}


class UsageError(ValueError):
    """A command line that cannot be used; the message says what was wrong."""


def parse_args(argv: list[str]) -> dict[str, str | list[str] | None]:
    """The four options of the agent, as ``--opt value`` or ``--opt=value``
    (``{"help": "yes"}`` when help is asked for).

    argparse is not used: with the ``shutil``, ``bz2`` and ``lzma`` it pulls in to
    format help, it was 0.75 MiB of the resident agent's memory, for four options.
    """
    out: dict[str, str | list[str] | None] = {"config": None, "name": None, "parent": None, "state_dir": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return {"help": "yes"}
        opt, eq, value = arg.partition("=")
        if opt not in _OPTIONS:
            raise UsageError(f"unrecognized argument: {arg}")
        if not eq:
            i += 1
            if i >= len(argv) or argv[i].startswith("--"):
                raise UsageError(f"argument {opt}: expected one argument")
            value = argv[i]
        key, repeat = _OPTIONS[opt]
        if repeat:
            out[key] = [*(out[key] or []), value]  # type: ignore[misc]
        else:
            out[key] = value
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{USAGE.splitlines()[0]}\nclumon-agent: error: {exc}", file=sys.stderr)
        return 2
    if "help" in args:
        print(USAGE)
        return 0
    if _without_tls() and notls.install():
        _uvloop_or_restart(sys.argv[1:] if argv is None else argv)

    from clumon.agent.config import AgentConfig
    from clumon.proto.config import ConfigError, load

    overrides = {"name": args["name"], "state_dir": args["state_dir"], "parents": args["parent"]}
    try:
        cfg = load(AgentConfig, args["config"], overrides)
    except ConfigError as exc:
        print(f"clumon-agent: config error: {exc}", file=sys.stderr)
        return 2

    from clumon.agent.service import Agent
    from clumon.proto import runtime, transport
    from clumon.proto.statefile import StateDirError, lock_state_dir

    try:  # the agent binds nothing: its spool and masks are what two agents must not share
        state_lock = lock_state_dir(cfg.state_dir)  # noqa: F841 - held for the process lifetime
    except StateDirError as exc:
        print(f"clumon-agent: {exc}", file=sys.stderr)
        return 2

    def start(stop):
        # A DEALER, and a probe with its monitor while failed over: libzmq's table
        # for the daemons' 65,536 sockets alone would be ~0.75 MiB of the agent's RSS.
        ctx = transport.make_context(AGENT_MAX_SOCKETS)
        return Agent(cfg, ctx).serve(stop)

    return runtime.run(start, cfg.log_level)


def _without_tls() -> bool:
    """Whether the agent runs with the stand-in ``ssl``: not when asked for the real
    one, nor when entry-point collectors are installed (a plugin may speak HTTPS to
    a BMC or a scheduler's REST API, and libraries such as urllib3 read ssl at import)."""
    from clumon.agent.plugins import GROUP, group_declared

    return os.environ.get(notls.REAL_SSL_ENV) != "1" and not group_declared(GROUP)


def _uvloop_or_restart(argv: list[str]) -> None:
    """Import uvloop (and asyncio) under the stand-in ``ssl``; should that fail (a
    uvloop that wants more of ssl at import), start again with the real module."""
    try:
        import uvloop  # noqa: F401
    except Exception as exc:  # anything: the stand-in lacks what this uvloop wants
        print(f"clumon-agent: uvloop does not import without ssl ({type(exc).__name__}: {exc}); "
              f"restarting with the real ssl module", file=sys.stderr, flush=True)
        os.execve(sys.executable, [sys.executable, "-m", "clumon.agent", *argv],
                  {**os.environ, notls.REAL_SSL_ENV: "1"})


if __name__ == "__main__":
    sys.exit(main())
