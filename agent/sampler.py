"""Which source is due, reading it, and the series dictionary.

The sampler runs each collector at its own interval and remembers the newest
value of every series (the agent's snapshot, served to sync reads). The series
dictionary maps names to positions; it gets a new ``dict_version`` whenever a
source gains or loses series, and the agent then sends a new HELLO.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from clumon.agent.collectors import Collector, Sample

log = logging.getLogger("clumon.agent.sampler")


@dataclass(slots=True)
class Source:
    collector: Collector
    interval: float
    next_due: float = 0.0
    names: frozenset[str] = frozenset()
    last_read: float = 0.0  # wall time of the last read
    errors: int = 0


@dataclass(slots=True)
class Reading:
    """The outcome of one sweep: values by name and whether the dictionary changed."""

    values: dict[str, float | None] = field(default_factory=dict)
    ts: float = 0.0
    dictionary_changed: bool = False
    sources: tuple[str, ...] = ()


class SeriesDictionary:
    """Series names in a fixed order; DATA frames refer to them by position."""

    def __init__(self) -> None:
        self.version = 0
        self.names: list[str] = []
        self.position: dict[str, int] = {}

    def rebuild(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.position = {n: i for i, n in enumerate(self.names)}
        self.version += 1

    def columns(self, values: dict[str, float | None]) -> tuple[list[int] | None, list[float | None]]:
        """(positions or None when every series is present in order, values)."""
        if len(values) == len(self.names):
            return None, [values.get(n) for n in self.names]
        pos = self.position
        idx = sorted(pos[n] for n in values if n in pos)
        names = self.names
        return idx, [values[names[i]] for i in idx]


class Sampler:
    """Runs due collectors and keeps the dictionary and the snapshot."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        default_interval: float,
        intervals: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        intervals = intervals or {}
        self.sources = [
            Source(c, float(intervals.get(c.name, max(default_interval, getattr(c, "default_interval", default_interval)))))
            for c in collectors
        ]
        self.dictionary = SeriesDictionary()
        #: newest value and its wall time, per series name
        self.snapshot: dict[str, tuple[float | None, float]] = {}
        self._clock = clock

    def due(self, now: float | None = None) -> list[Source]:
        now = self._clock() if now is None else now
        return [s for s in self.sources if s.next_due <= now]

    def next_due(self) -> float:
        return min(s.next_due for s in self.sources)

    def read(self, sources: Sequence[Source]) -> Reading:
        """Read the given sources now (blocking: call from an executor)."""
        now_mono, now = self._clock(), time.time()
        reading = Reading(ts=now, sources=tuple(s.collector.name for s in sources))
        for src in sources:
            src.next_due = max(src.next_due + src.interval, now_mono)
            try:
                samples: list[Sample] = src.collector.collect()
            except Exception as exc:  # a broken source must not stop the others
                src.errors += 1
                log.warning("source %s failed: %s: %s", src.collector.name, type(exc).__name__, exc)
                continue
            src.last_read = now
            names = frozenset(s.name for s in samples)
            if names != src.names:
                src.names = names
                reading.dictionary_changed = True
            for s in samples:
                v = s.value
                if v is not None and not math.isfinite(v):
                    v = None
                reading.values[s.name] = v
                self.snapshot[s.name] = (v, now)
        if reading.dictionary_changed:
            all_names = set().union(*(s.names for s in self.sources))
            if set(self.dictionary.names) != all_names:
                for gone in set(self.dictionary.names) - all_names:
                    self.snapshot.pop(gone, None)
                self.dictionary.rebuild(all_names)
            else:
                reading.dictionary_changed = False
        return reading

    def read_all(self) -> Reading:
        """Read every source (the first sweep, and fresh sync reads)."""
        return self.read(self.sources)
