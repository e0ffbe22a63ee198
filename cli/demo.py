"""``clumon demo``: a whole tree on localhost — a root, two aggregators, four agents."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from clumon.cli.daemon import Daemon


def secure(workdir: Path, aggregators: int, agents: int) -> dict[str, Path]:
    """Keys for every daemon of the demo and for its user (``admin``), made once
    (``workdir/keys``), and each daemon's config with its ``[curve]`` table: the
    demo runs secured, as a site should. Returns each daemon's config file."""
    import shutil

    from clumon.proto.curve import generate

    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    aggs = [f"agg-{a}" for a in range(1, aggregators + 1)]
    nodes = [f"node-{n}" for n in range(1, agents + 1)]
    for name in ["root", "admin", *aggs, *nodes]:
        if not (keys / f"{name}.key_secret").exists():
            generate(name, keys)

    def authorized(parent: str, names: list[str]) -> Path:
        d = keys / f"authorized-{parent}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        for n in names:
            shutil.copy(keys / f"{n}.key", d / f"{n}.key")
        return d

    def config(label: str, parent: str | None, children: list[str] | None) -> Path:
        lines = ["[curve]", f'secret_key = "{keys / (label + ".key_secret")}"']
        if parent:
            lines.append(f'parent_key = "{keys / (parent + ".key")}"')
        if children is not None:
            lines.append(f'authorized_keys = "{authorized(label, children)}"')
        if label == "node-1":  # the demo's own daemon logs, for the logs page and `clumon logs`
            lines += ["", "[[log]]", f'path = "{workdir / "*.log"}"', 'source = "clumon"']
        path = workdir / f"{label}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    out = {"root": config("root", None, [*aggs, "admin"])}
    for a, agg in enumerate(aggs, 1):
        mine = [n for i, n in enumerate(nodes, 1) if (i - 1) * aggregators // agents + 1 == a]
        out[agg] = config(agg, "root", mine)
    for i, n in enumerate(nodes, 1):
        out[n] = config(n, f"agg-{(i - 1) * aggregators // agents + 1}", None)
    return out


def plan(workdir: Path, base_port: int, aggregators: int, agents: int, interval: float,
         configs: dict[str, Path] | None = None) -> list[Daemon]:
    """The daemons of a demo tree, root first, agents spread over the aggregators."""
    py = sys.executable
    db = workdir / "clumon.db"

    def conf(label: str) -> list[str]:
        return ["--config", str(configs[label])] if configs else []

    root = Daemon("root", [py, "-m", "clumon.root", *conf("root"), "--listen", f"tcp://127.0.0.1:{base_port}",
                           "--query", f"tcp://127.0.0.1:{base_port + 1}",
                           "--http", f"127.0.0.1:{base_port + 2}",
                           "--database", f"sqlite:///{db}", "--state-dir", str(workdir / "root")],
                  workdir / "root.log")
    daemons = [root]
    for a in range(1, aggregators + 1):
        port = base_port + 10 + a
        daemons.append(Daemon(f"agg-{a}", [py, "-m", "clumon.aggregator", *conf(f"agg-{a}"), "--name", f"agg-{a}",
                                           "--listen", f"tcp://127.0.0.1:{port}",
                                           "--parent", f"tcp://127.0.0.1:{base_port}",
                                           "--state-dir", str(workdir / f"agg-{a}")],
                              workdir / f"agg-{a}.log"))
    for n in range(1, agents + 1):
        agg = (n - 1) * aggregators // agents + 1
        argv = [py, "-m", "clumon.agent", *conf(f"node-{n}"), "--name", f"node-{n}",
                "--parent", f"tcp://127.0.0.1:{base_port + 10 + agg}",
                "--state-dir", str(workdir / f"node-{n}")]
        daemons.append(Daemon(f"node-{n}", argv, workdir / f"node-{n}.log"))
    return daemons


def _last_line(d: Daemon) -> str:
    """The last line a daemon logged (its one-line reason when it stopped at once)."""
    try:
        lines = [line for line in d.log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def run(workdir: Path, base_port: int = 7400, aggregators: int = 2, agents: int = 4,
        interval: float = 1.0, duration: float | None = None) -> int:
    """Start the tree, print where everything is, run until SIGINT/SIGTERM (or ``duration``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    workdir.mkdir(parents=True, exist_ok=True)
    daemons = plan(workdir, base_port, aggregators, agents, interval, secure(workdir, aggregators, agents))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for d in daemons:
            d.start(env)
            if d.label in ("root",) or d.label.startswith("agg-"):
                if not d.wait_ready(30):
                    console.print(f"[red]{d.label} did not start: {_last_line(d)} (see {d.log_path})[/red]")
                    return 1
        for d in daemons:
            if not d.wait_ready(30):
                console.print(f"[red]{d.label} did not start: {_last_line(d)} (see {d.log_path})[/red]")
                return 1
        table = Table(title="clumon demo: a root, aggregators and agents on localhost")
        for col in ("daemon", "pid", "listens / connects to", "log"):
            table.add_column(col)
        for d in daemons:
            r = d.ready or {}
            where = (f"children {r.get('listen')}, queries {r.get('query')}" if d.label == "root"
                     else f"children {r.get('listen')} -> {', '.join(r.get('parents', []))}" if d.label.startswith("agg")
                     else f"-> {', '.join(r.get('parents', []))}")
            table.add_row(d.label, str(d.proc.pid), where, str(d.log_path))
        console.print(table)
        console.print(f"database: [bold]{workdir / 'clumon.db'}[/bold] (SQLite)")
        key = (workdir / "keys" / "admin.key_secret").resolve()
        console.print(f"secured with CurveZMQ: keys in {workdir / 'keys'}; your key: [bold]export CLUMON_KEY={key}[/bold]")
        console.print(f"try: clumon --endpoint tcp://127.0.0.1:{base_port + 1} nodes   "
                      "| clumon latest node-1 | clumon series node-1 node_load1 --since 5m "
                      "| clumon logs --since 5m (node-1 tails the demo's daemon logs)")
        console.print(f"dashboard: [bold]http://127.0.0.1:{base_port + 2}/[/bold] (pages, /api/v1/, /metrics; "
                      "loopback only, so no token)")
        console.print("Ctrl-C stops everything.")
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            dead = [d for d in daemons if d.proc.poll() is not None]
            if dead:
                console.print(f"[red]{dead[0].label} exited ({dead[0].proc.returncode}); see {dead[0].log_path}[/red]")
                return 1
            stop.wait(0.5)
        return 0
    finally:
        # agents first, so their last frames reach a root that is still there
        for d in reversed(daemons):
            d.stop()
        console.print("demo stopped")
