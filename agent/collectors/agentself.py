"""The agent's own health, as series stored like any node's.

Aggregators and the root export theirs (``clumon_aggregator_*``, ``clumon_root_*``);
this is the agent's part: what it sent, what waits in its spool, what it dropped,
and what it costs the node it watches.
"""

from __future__ import annotations

import os
from typing import Callable

from .base import ProcFile, Sample

#: uplink figure -> series (counters end in _total)
_LINK = (
    ("frames_out", "clumon_agent_frames_out_total"),
    ("bytes_out", "clumon_agent_bytes_out_total"),
    ("spool_frames", "clumon_agent_spool_frames"),
    ("spool_bytes", "clumon_agent_spool_bytes"),
    ("spool_dropped_total", "clumon_agent_spool_dropped_total"),
    ("spool_disk_errors", "clumon_agent_spool_disk_errors_total"),
    ("failovers", "clumon_agent_failovers_total"),
    ("decode_errors", "clumon_agent_decode_errors_total"),
    ("acks_in", "clumon_agent_acks_in_total"),
)


class AgentSelfCollector:
    """``clumon_agent_*``: the uplink's figures (``stats()``, read on the loop that
    owns them) and the agent process's CPU seconds and resident memory from
    ``/proc/self``."""

    name = "agent"
    default_interval = 10.0
    #: /proc/self files and counters owned by the loop: read on the loop
    on_loop = True

    def __init__(self, stats: Callable[[], dict] | None = None, procfs: str = "/proc", pid: str = "self") -> None:
        self._stats = stats
        self._stat = ProcFile(f"{procfs}/{pid}/stat")
        self._statm = ProcFile(f"{procfs}/{pid}/statm")
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._page = float(os.sysconf("SC_PAGE_SIZE"))

    def bind(self, stats: Callable[[], dict]) -> None:
        """Read the uplink's figures from ``stats`` (the agent binds its uplink,
        made after the collectors)."""
        self._stats = stats

    def collect(self) -> list[Sample]:
        """The uplink's figures, then CPU seconds and RSS (None when unreadable)."""
        try:
            figures = self._stats() if self._stats is not None else {}
        except Exception:  # a collector never raises: a figure is missing, not the source
            figures = {}
        out = [Sample(series, _number(figures.get(key))) for key, series in _LINK]
        out.append(Sample("clumon_agent_cpu_seconds_total", self._cpu_seconds()))
        out.append(Sample("clumon_agent_resident_bytes", self._resident()))
        return out

    def _cpu_seconds(self) -> float | None:
        raw = self._stat.read()
        # the command name (field 2) may hold spaces and parentheses: split after it
        fields = raw[raw.rfind(b")") + 2:].split() if raw else []
        try:
            return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime
        except (IndexError, ValueError):
            return None

    def _resident(self) -> float | None:
        raw = self._statm.read()
        try:
            return int(raw.split()[1]) * self._page
        except (AttributeError, IndexError, ValueError):
            return None


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
