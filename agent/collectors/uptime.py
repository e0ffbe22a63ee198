"""Uptime from /proc/uptime."""

from __future__ import annotations

from .base import ColumnCollector, ProcFile


_NAMES = ("node_uptime_seconds",)


class UptimeCollector(ColumnCollector):
    """``node_uptime_seconds``: seconds since boot (boot time itself is inventory)."""

    name = "uptime"
    #: It moves by exactly the time that passed: read each second it is suppressed
    #: every second anyway (0.1 % of a day is 86 s), and a reboot shows as a new
    #: incarnation at once. Read with the slow sources, like the filesystems.
    default_interval = 30.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc") -> None:
        self._file = ProcFile(f"{procfs}/uptime")

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/uptime; the value is None if it is unreadable."""
        raw = self._file.read()
        try:
            value: float | None = float(raw.split()[0]) if raw else None
        except (IndexError, ValueError):
            value = None
        return _NAMES, [value]
