"""The default set of collectors, by source name."""

from __future__ import annotations

from typing import Callable, Iterable

from .base import Collector
from .load import LoadCollector
from .uptime import UptimeCollector

#: Source name -> factory(procfs, per_cpu). Order is the order of collection and
#: of series in the dictionary, so keep it stable.
_FACTORIES: dict[str, Callable[[str, bool], Collector]] = {
    "load": lambda procfs, per_cpu: LoadCollector(procfs),
    "uptime": lambda procfs, per_cpu: UptimeCollector(procfs),
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
