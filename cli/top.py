"""``clumon top``: a live full-screen view of the cluster, refreshed every second.

Plain rich renderables over one ``overview`` request per refresh, so it works in
any terminal and over ssh; ``q`` (or Ctrl-C) quits. Below 120 columns the three
"hottest" tables become one (CPU, memory and load side by side), so an 80x24
terminal shows every name and figure whole. ``--once`` prints a single frame (for
scripts and logs).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from typing import Any

from rich.console import Console, Group
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clumon.cli.client import Client, ClientError

STATE_STYLE = {"up": "green", "suspect": "yellow", "down": "red", "unreachable": "magenta", "restarted": "cyan"}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:5.1f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


#: below this many columns the compact layout (one "hottest" table)
WIDE = 120


def _hot_table(title: str, rows: list[dict], key: str, fmt) -> Table:
    t = Table(title=title, expand=True, title_style="bold")
    t.add_column("node", no_wrap=True)
    t.add_column("aggregator", no_wrap=True)
    t.add_column(key, justify="right", no_wrap=True)
    for r in rows:
        t.add_row(r["node"], r["aggregator"] or "(root)", fmt(r[key]))
    return t


def _hottest(ov: dict) -> Table:
    """The hottest nodes by CPU with their memory and load: one table for narrow screens."""
    t = Table(title="hottest by CPU", expand=True, title_style="bold", padding=(0, 1))
    for col in ("node", "aggregator", "cpu", "memory", "load1"):
        t.add_column(col, no_wrap=True, justify="left" if col in ("node", "aggregator") else "right")
    for r in ov["hottest_cpu"]:
        t.add_row(r["node"], r["aggregator"] or "(root)", _pct(r.get("cpu")), _pct(r.get("memory")),
                  _num(r.get("load1")))
    return t


def _header(ov: dict, endpoint: str) -> Text:
    text = Text(f"clumon top — {endpoint} — {time.strftime('%H:%M:%S')} — {ov['nodes']} nodes: ")
    for state, n in sorted(ov["states"].items()):
        text.append(f"{state} {n}  ", style=STATE_STYLE.get(state, ""))
    return text


def _aggregators(ov: dict, wide: bool = True) -> Table:
    t = Table(title="aggregators", expand=True, title_style="bold", padding=(0, 1))
    cols = (("aggregator", "state", "nodes", "up", "avg cpu", "max cpu", "avg mem", "avg load1", "max load1")
            if wide else ("aggregator", "state", "nodes", "up", "cpu avg", "cpu max", "load1 max"))
    for col in cols:
        t.add_column(col, no_wrap=True, justify="right" if col not in ("aggregator", "state") else "left")
    for a in ov["aggregators"]:
        style = STATE_STYLE.get(a["state"], "")
        figures = ([_pct(a["avg_cpu"]), _pct(a["max_cpu"]), _pct(a["avg_memory"]), _num(a["avg_load1"]),
                    _num(a["max_load1"])] if wide else [_pct(a["avg_cpu"]), _pct(a["max_cpu"]), _num(a["max_load1"])])
        t.add_row(a["aggregator"], Text(a["state"], style=style), str(a["nodes"]), str(a["up"]), *figures)
    return t


def _events(ov: dict) -> Table:
    t = Table(title="recent events", expand=True, title_style="bold", padding=(0, 1))
    t.add_column("time", no_wrap=True)
    t.add_column("subject", no_wrap=True)
    t.add_column("message", overflow="fold")  # long messages wrap; names and times never
    for e in ov.get("events", []):
        t.add_row(time.strftime("%H:%M:%S", time.localtime(e["ts"])), e["subject"], e["message"])
    return t


def render(ov: dict, endpoint: str, width: int = WIDE) -> Layout:
    """One frame of the view, for a terminal ``width`` columns wide."""
    layout = Layout()
    layout.split_column(Layout(name="head", size=1 if width >= WIDE else 2), Layout(name="hot", ratio=2),
                        Layout(name="aggs", ratio=1), Layout(name="events", ratio=1))
    layout["head"].update(_header(ov, endpoint))
    if width >= WIDE:
        hot = Layout()
        hot.split_row(Layout(_hot_table("hottest by CPU", ov["hottest_cpu"], "cpu", _pct)),
                      Layout(_hot_table("by memory", ov["hottest_memory"], "memory", _pct)),
                      Layout(_hot_table("by load", ov["hottest_load1"], "load1", _num)))
        layout["hot"].update(hot)
    else:
        layout["hot"].update(_hottest(ov))
    layout["aggs"].update(_aggregators(ov, width >= WIDE))
    layout["events"].update(_events(ov))
    return layout


class _Keys:
    """Single key presses from a terminal (cbreak mode, restored on exit); none
    when stdin is not a terminal."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self._saved = None

    def __enter__(self) -> "_Keys":
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def wait(self, timeout: float) -> str:
        """A key pressed within ``timeout`` seconds, or '' (sleeps when not a terminal)."""
        if self.fd is None:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 1).decode(errors="replace") if ready else ""


def run(client: Client, interval: float = 1.0, once: bool = False, top: int = 10) -> dict[str, Any]:
    """Refresh until Ctrl-C (or once); returns the last overview."""
    console = Console()
    ov = client.call("overview", top=top)
    if once:
        wide = console.width >= WIDE
        hot = ([_hot_table("hottest by CPU", ov["hottest_cpu"], "cpu", _pct),
                _hot_table("hottest by memory", ov["hottest_memory"], "memory", _pct),
                _hot_table("hottest by load", ov["hottest_load1"], "load1", _num)] if wide else [_hottest(ov)])
        console.print(Group(_header(ov, client.endpoint), *hot, _aggregators(ov, wide), _events(ov)))
        return ov
    try:
        with _Keys() as keys, Live(render(ov, client.endpoint, console.width), console=console, screen=True,
                                   auto_refresh=False) as live:
            while keys.wait(interval).lower() != "q":
                try:
                    ov = client.call("overview", top=top)
                    live.update(render(ov, client.endpoint, console.width), refresh=True)
                except ClientError as exc:
                    live.update(Panel(f"root not answering: {exc}", style="red"), refresh=True)
    except KeyboardInterrupt:
        pass
    return ov
