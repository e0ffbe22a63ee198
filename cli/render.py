"""What the command line's commands share: durations, times, numbers, tables."""

from __future__ import annotations

import argparse
import re
import time

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """'90', '90s', '5m', '2h', '1d' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 5m, 2h or 1d, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0.0, time.time() - ts)
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.0f}h"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def since(ts: float | None) -> str:
    """A time of today as HH:MM:SS, an older one with its date: keeps tables narrow."""
    if not ts:
        return "-"
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(ts))
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", time.localtime(ts))


def num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v)}"
    return f"{v:.6g}"


STATE_STYLE = {"up": "green", "suspect": "yellow", "down": "red", "unreachable": "magenta", "restarted": "cyan"}


def console():
    from rich.console import Console
    return Console()


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    console().print(t)


def styled(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state
