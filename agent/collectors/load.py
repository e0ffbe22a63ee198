"""Load averages from /proc/loadavg."""

from __future__ import annotations

from .base import ColumnCollector, ProcFile

_NAMES = ("node_load1", "node_load5", "node_load15")


class LoadCollector(ColumnCollector):
    """``node_load1``, ``node_load5``, ``node_load15`` (run-queue averages)."""

    name = "load"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc") -> None:
        self._file = ProcFile(f"{procfs}/loadavg")

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/loadavg; all three values are None if it is unreadable."""
        raw = self._file.read()
        fields = raw.split() if raw else []
        values: list[float | None] = []
        for i in range(3):
            try:
                values.append(float(fields[i]))
            except (IndexError, ValueError):
                values.append(None)
        return _NAMES, values
