"""The default set of collectors, by source name."""

from __future__ import annotations

from typing import Callable, Iterable

from .agentself import AgentSelfCollector
from .base import Collector
from .cpu import CpuCollector
from .diskio import DiskIoCollector
from .filefd import FileFdCollector
from .filesystem import FilesystemCollector
from .load import LoadCollector
from .memory import MemoryCollector
from .netstat import NetstatCollector
from .network import NetworkCollector
from .pressure import PressureCollector
from .processes import ProcessesCollector
from .swap import SwapCollector
from .temperature import TemperatureCollector
from .uptime import UptimeCollector

#: Source name -> factory(procfs, per_cpu). Order is the order of collection and
#: of series in the dictionary, so keep it stable.
_FACTORIES: dict[str, Callable[[str, bool], Collector]] = {
    "cpu": lambda procfs, per_cpu: CpuCollector(procfs, per_cpu=per_cpu),
    "load": lambda procfs, per_cpu: LoadCollector(procfs),
    "memory": lambda procfs, per_cpu: MemoryCollector(procfs),
    "swap": lambda procfs, per_cpu: SwapCollector(procfs),
    "pressure": lambda procfs, per_cpu: PressureCollector(procfs),
    "filefd": lambda procfs, per_cpu: FileFdCollector(procfs),
    "network": lambda procfs, per_cpu: NetworkCollector(procfs),
    "netstat": lambda procfs, per_cpu: NetstatCollector(procfs),
    "diskio": lambda procfs, per_cpu: DiskIoCollector(procfs),
    "filesystem": lambda procfs, per_cpu: FilesystemCollector(procfs),
    "processes": lambda procfs, per_cpu: ProcessesCollector(procfs),
    # Reads sysfs, not procfs: sensors live under /sys/class.
    "temperature": lambda procfs, per_cpu: TemperatureCollector(),
    "uptime": lambda procfs, per_cpu: UptimeCollector(procfs),
    # The agent's own health; the agent binds its uplink's figures to it.
    "agent": lambda procfs, per_cpu: AgentSelfCollector(procfs=procfs),
}

#: Every source name ``default_collectors`` knows.
SOURCES: tuple[str, ...] = tuple(_FACTORIES)


def default_collectors(
    procfs: str = "/proc", per_cpu: bool = False, include: Iterable[str] | None = None
) -> list[Collector]:
    """The built-in collectors reading ``procfs``.

    ``include`` restricts them to the given source names (an unknown name raises
    ``ValueError`` so a typo in a config is not silently ignored); ``per_cpu``
    adds per-CPU series to the ``cpu`` source.
    """
    names = SOURCES if include is None else tuple(include)
    unknown = [n for n in names if n not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown collector(s) {unknown}; known: {list(SOURCES)}")
    return [_FACTORIES[n](procfs, per_cpu) for n in names]
