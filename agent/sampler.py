"""Which source is due, reading it, and the series dictionary.

The sampler runs each collector at its own interval and remembers the newest
value of every series (the agent's snapshot, served to sync reads). The series
dictionary maps names to positions; it gets a new ``dict_version`` whenever a
source gains or loses series, and the agent then sends a new HELLO.
"""

from __future__ import annotations

import logging
import math
import threading
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
    #: the names of the last read in their order (compared before ``names`` is rebuilt)
    order: list[str] = field(default_factory=list)
    last_read: float = 0.0  # wall time of the last read
    errors: int = 0
    #: times collect() was called (the shared-snapshot tests count these)
    reads: int = 0
    #: read elsewhere (an executable plugin) and handed over with ``absorb``
    pushed: bool = False
    #: the last failure, '' while the source reads fine
    failure: str = ""
    #: check what collect() returns (plugins; built-in collectors are trusted)
    check: bool = False
    #: read on the event loop, not in the collecting thread (the collector's
    #: ``on_loop``: it reads only /proc files the kernel makes from memory)
    on_loop: bool = False


@dataclass(slots=True)
class Reading:
    """The outcome of one sweep: values by name and whether the dictionary changed."""

    values: dict[str, float | None] = field(default_factory=dict)
    ts: float = 0.0
    dictionary_changed: bool = False
    sources: tuple[str, ...] = ()
    #: (source, message) of sources that started failing in this read
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: series names that went away when the dictionary changed
    gone: tuple[str, ...] = ()


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
        ratio_digits: int = 0,
    ):
        intervals = intervals or {}
        self.sources = [
            Source(c, float(intervals.get(c.name, max(default_interval, getattr(c, "default_interval", default_interval)))),
                   on_loop=getattr(c, "on_loop", False) is True)
            for c in collectors
        ]
        # Readings of on-loop sources and of the collecting thread's may settle
        # the dictionary at the same time.
        self._settling = threading.Lock()
        self.dictionary = SeriesDictionary()
        #: newest value and its wall time, per series name
        self.snapshot: dict[str, tuple[float | None, float]] = {}
        self._clock = clock
        #: ``_ratio`` series are rounded to this many decimals (0: not rounded)
        self.ratio_digits = ratio_digits
        self._is_ratio: dict[str, bool] = {}

    def due(self, now: float | None = None) -> list[Source]:
        now = self._clock() if now is None else now
        return [s for s in self.sources if s.next_due <= now and not s.pushed]

    def next_due(self) -> float:
        return min((s.next_due for s in self.sources if not s.pushed), default=self._clock() + 1.0)

    def source(self, name: str) -> Source | None:
        for s in self.sources:
            if s.collector.name == name:
                return s
        return None

    def add_pushed(self, collector: Collector, interval: float) -> Source:
        """A source read elsewhere (an executable plugin) whose samples come in by ``absorb``."""
        src = Source(collector, interval, next_due=float("inf"), pushed=True)
        self.sources.append(src)
        return src

    def read(self, sources: Sequence[Source]) -> Reading:
        """Read the given sources now (blocking: call from an executor)."""
        now_mono, now = self._clock(), time.time()
        reading = Reading(ts=now, sources=tuple(s.collector.name for s in sources))
        for src in sources:
            # keep the source's phase; a source more than an interval late (or never
            # read) starts a new phase instead of being read again at once
            nd = src.next_due + src.interval
            src.next_due = nd if nd > now_mono else now_mono + src.interval
            src.reads += 1
            try:
                samples = src.collector.collect()
                if src.check:
                    samples = _checked(samples)
            except Exception as exc:  # a broken source must not stop the others
                self.failed(src, f"{type(exc).__name__}: {exc}", reading)
                continue
            self._take(src, samples, now, reading)
        self._settle(reading)
        return reading

    def absorb(self, src: Source, samples: list[Sample], now: float | None = None) -> Reading:
        """Take samples of a pushed source as if it had just been read."""
        now = time.time() if now is None else now
        reading = Reading(ts=now, sources=(src.collector.name,))
        self._take(src, samples, now, reading)
        self._settle(reading)
        return reading

    def failed(self, src: Source, message: str, reading: Reading) -> None:
        src.errors += 1
        if not src.failure:
            reading.failures.append((src.collector.name, message))
            log.warning("source %s failed: %s", src.collector.name, message)
        src.failure = message

    def _take(self, src: Source, samples: list[Sample], now: float, reading: Reading) -> None:
        src.failure = ""
        src.last_read = now
        values, snapshot, isfinite = reading.values, self.snapshot, math.isfinite
        digits, is_ratio = self.ratio_digits, self._is_ratio
        order = []
        for s in samples:
            name, v = s.name, s.value
            if v is not None:
                if not isfinite(v):
                    v = None
                elif digits:
                    # Here, before change suppression sees it: a wobble in the
                    # 7th digit of a ratio is noise, not a change worth sending.
                    r = is_ratio.get(name)
                    if r is None:
                        r = is_ratio[name] = name.partition("{")[0].endswith("_ratio")
                    if r:
                        v = round(v, digits)
            values[name] = v
            snapshot[name] = (v, now)
            order.append(name)
        # Collectors hand out the same name objects read after read, so comparing
        # lists is a pointer walk; a set is built only when the order differs.
        if order != src.order:
            src.order = order
            names = frozenset(order)
            if names != src.names:
                src.names = names
                reading.dictionary_changed = True

    def _settle(self, reading: Reading) -> None:
        if not reading.dictionary_changed:
            return
        with self._settling:
            self._rebuild(reading)

    def _rebuild(self, reading: Reading) -> None:
        all_names = set().union(*(s.names for s in self.sources))
        if set(self.dictionary.names) != all_names:
            gone = set(self.dictionary.names) - all_names
            for name in gone:
                self.snapshot.pop(name, None)
                self._is_ratio.pop(name, None)
            reading.gone = tuple(gone)
            self.dictionary.rebuild(all_names)
        else:
            reading.dictionary_changed = False

    def read_all(self) -> Reading:
        """Read every source (the first sweep, and fresh sync reads)."""
        return self.read(self.sources)


def _checked(samples: object) -> list[Sample]:
    """A collector's result, checked: a plugin that returns garbage is a failing source."""
    out = list(samples)  # type: ignore[call-overload]
    for s in out:
        if not isinstance(getattr(s, "name", None), str) or not (
            s.value is None or (isinstance(s.value, (int, float)) and not isinstance(s.value, bool))
        ):
            raise TypeError(f"collect() must return Samples (name: str, value: float | None), got {s!r}")
    return out
