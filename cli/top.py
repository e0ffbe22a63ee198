"""``clumon top``: a live full-screen view of the cluster, refreshed every second.

Plain rich renderables over one ``overview`` request per refresh, so it works in
any terminal and over ssh. ``--once`` prints a single frame (for scripts and logs).
"""

from __future__ import annotations

import time
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


def _hot_table(title: str, rows: list[dict], key: str, fmt) -> Table:
    t = Table(title=title, expand=True, title_style="bold")
    t.add_column("node")
    t.add_column("aggregator")
    t.add_column(key, justify="right")
    for r in rows:
        t.add_row(r["node"], r["aggregator"] or "(root)", fmt(r[key]))
    return t


def _header(ov: dict, endpoint: str) -> Text:
    text = Text(f"clumon top — {endpoint} — {time.strftime('%H:%M:%S')} — {ov['nodes']} nodes: ")
    for state, n in sorted(ov["states"].items()):
        text.append(f"{state} {n}  ", style=STATE_STYLE.get(state, ""))
    return text


def _aggregators(ov: dict) -> Table:
    t = Table(title="aggregators", expand=True, title_style="bold")
    for col in ("aggregator", "state", "nodes", "up", "avg cpu", "max cpu", "avg mem", "avg load1", "max load1"):
        t.add_column(col, justify="right" if col not in ("aggregator", "state") else "left")
    for a in ov["aggregators"]:
        style = STATE_STYLE.get(a["state"], "")
        t.add_row(a["aggregator"], Text(a["state"], style=style), str(a["nodes"]), str(a["up"]),
                  _pct(a["avg_cpu"]), _pct(a["max_cpu"]), _pct(a["avg_memory"]),
                  _num(a["avg_load1"]), _num(a["max_load1"]))
    return t


def _events(ov: dict) -> Table:
    t = Table(title="recent events", expand=True, title_style="bold")
    t.add_column("time")
    t.add_column("subject")
    t.add_column("message")
    for e in ov.get("events", []):
        t.add_row(time.strftime("%H:%M:%S", time.localtime(e["ts"])), e["subject"], e["message"])
    return t


def render(ov: dict, endpoint: str) -> Layout:
    """One frame of the view."""
    layout = Layout()
    layout.split_column(Layout(name="head", size=1), Layout(name="hot", ratio=2),
                        Layout(name="aggs", ratio=1), Layout(name="events", ratio=1))
    layout["head"].update(_header(ov, endpoint))
    hot = Layout()
    hot.split_row(Layout(_hot_table("hottest by CPU", ov["hottest_cpu"], "cpu", _pct)),
                  Layout(_hot_table("by memory", ov["hottest_memory"], "memory", _pct)),
                  Layout(_hot_table("by load", ov["hottest_load1"], "load1", _num)))
    layout["hot"].update(hot)
    layout["aggs"].update(_aggregators(ov))
    layout["events"].update(_events(ov))
    return layout


def run(client: Client, interval: float = 1.0, once: bool = False, top: int = 10) -> dict[str, Any]:
    """Refresh until Ctrl-C (or once); returns the last overview."""
    console = Console()
    ov = client.call("overview", top=top)
    if once:
        console.print(Group(_header(ov, client.endpoint),
                            _hot_table("hottest by CPU", ov["hottest_cpu"], "cpu", _pct),
                            _hot_table("hottest by memory", ov["hottest_memory"], "memory", _pct),
                            _hot_table("hottest by load", ov["hottest_load1"], "load1", _num),
                            _aggregators(ov), _events(ov)))
        return ov
    try:
        with Live(render(ov, client.endpoint), console=console, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    ov = client.call("overview", top=top)
                    live.update(render(ov, client.endpoint), refresh=True)
                except ClientError as exc:
                    live.update(Panel(f"root not answering: {exc}", style="red"), refresh=True)
    except KeyboardInterrupt:
        pass
    return ov
