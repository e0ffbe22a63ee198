"""Uptime from /proc/uptime."""

from __future__ import annotations

from .base import ProcFile, Sample, as_samples


_NAMES = ("node_uptime_seconds",)


class UptimeCollector:
    """``node_uptime_seconds``: seconds since boot (boot time itself is inventory)."""

    name = "uptime"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc") -> None:
        self._file = ProcFile(f"{procfs}/uptime")

    def collect(self) -> list[Sample]:
        """Read /proc/uptime; the value is None if it is unreadable."""
        return as_samples(self.collect_columns())

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """``collect()`` as (names, values)."""
        raw = self._file.read()
        try:
            value: float | None = float(raw.split()[0]) if raw else None
        except (IndexError, ValueError):
            value = None
        return _NAMES, [value]
