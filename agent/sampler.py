"""Which source is due, reading it, and the series dictionary.

The sampler runs each collector at its own interval and remembers the newest
value of every series (the agent's snapshot, served to sync reads). The series
dictionary maps names to positions; it gets a new ``dict_version`` whenever a
source gains or loses series, and the agent then sends a new HELLO.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from math import isfinite
from typing import Callable, Iterable, Sequence

from clumon.agent.collectors import Collector, Sample

log = logging.getLogger("clumon.agent.sampler")


@dataclass(slots=True)
class Source:
    collector: Collector
    interval: float
    next_due: float = 0.0
    names: frozenset[str] = frozenset()
    #: the last read as (names, values by position, wall time): the source's part of
    #: the snapshot. One attribute, replaced whole: the loop reads it while the
    #: collecting thread may be taking the next read of a thread source.
    last: tuple[tuple[str, ...], list[float | None], float] = ((), [], 0.0)
    #: positions in the last read's names of ``_ratio`` series (rounded to
    #: ``ratio_digits``; used by the thread reading the source only)
    ratio_positions: tuple[int, ...] = ()
    errors: int = 0
    #: times the source was read (the shared-snapshot tests count these)
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

    @property
    def last_read(self) -> float:
        """Wall time of the last read (0 before the first)."""
        return self.last[2]


@dataclass(slots=True)
class Reading:
    """The outcome of one sweep: each source's (names, values) read and whether the
    dictionary changed."""

    parts: list[tuple[tuple[str, ...], list[float | None]]] = field(default_factory=list)
    ts: float = 0.0
    #: monotonic time the read began (change suppression's clock)
    mono: float = 0.0
    dictionary_changed: bool = False
    sources: tuple[str, ...] = ()
    #: (source, message) of sources that started failing in this read
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: series names that went away when the dictionary changed
    gone: tuple[str, ...] = ()
    #: read by the schedule (its values are stored), or off it by a sync read
    scheduled: bool = True

    @property
    def values(self) -> dict[str, float | None]:
        """Values by name (a new dict; the agent's publish works on ``parts``)."""
        out: dict[str, float | None] = {}
        for names, values in self.parts:
            out.update(zip(names, values))
        return out

    @property
    def count(self) -> int:
        """How many values were read."""
        return sum(len(values) for _, values in self.parts)


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
        return self.columns_of(list(values), list(values.values()))

    def columns_of(self, names: list[str], values: list[float | None]) -> tuple[list[int] | None, list[float | None]]:
        """``columns`` for names and values side by side: by position, in
        position order; a name not in the dictionary is left out, a repeated one
        keeps its last value."""
        pos = self.position
        if len(names) == len(self.names) and names == self.names:
            return None, values
        got = {pos[n]: v for n, v in zip(names, values) if n in pos}
        idx = sorted(got)
        return (None if len(idx) == len(self.names) else idx), [got[i] for i in idx]


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
        self._clock = clock
        #: ``_ratio`` series are rounded to this many decimals (0: not rounded)
        self.ratio_digits = ratio_digits
        self._ratio_scale = 10.0 ** ratio_digits

    @property
    def snapshot(self) -> dict[str, tuple[float | None, float]]:
        """The newest value of every series and the wall time it was read (a copy).

        Each source keeps its last read as columns (``Source.last``: names, values,
        time), so a read stores no object per value; this view is for the rare asker.
        """
        out: dict[str, tuple[float | None, float]] = {}
        for src in self.sources:
            names, values, ts = src.last
            out.update((n, (v, ts)) for n, v in zip(names, values))
        return out

    def latest(self) -> dict[str, float | None]:
        """The newest value of every series."""
        out: dict[str, float | None] = {}
        for src in self.sources:
            names, values, _ = src.last
            out.update(zip(names, values))
        return out

    def monotonic(self) -> float:
        """The schedule's clock."""
        return self._clock()

    def due(self, now: float | None = None) -> list[Source]:
        now = self._clock() if now is None else now
        return [s for s in self.sources if s.next_due <= now and not s.pushed]

    def next_due(self) -> float:
        # pushed sources are due at +inf: never the minimum
        due = min(map(_NEXT_DUE, self.sources), default=math.inf)
        return due if due != math.inf else self._clock() + 1.0

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

    def read(self, sources: Sequence[Source], scheduled: bool = True) -> Reading:
        """Read the given sources now (blocking: call from an executor).

        A read off the schedule (``scheduled=False``: a sync read between two
        ticks) keeps every source's phase.
        """
        now_mono, now = self._clock(), time.time()
        reading = Reading(ts=now, mono=now_mono, sources=tuple([s.collector.name for s in sources]),
                          scheduled=scheduled)
        for src in sources:
            if scheduled:
                # keep the source's phase; a source more than an interval late (or
                # never read) starts a new phase instead of being read again at once
                nd = src.next_due + src.interval
                src.next_due = nd if nd > now_mono else now_mono + src.interval
            src.reads += 1
            try:
                columns = getattr(src.collector, "collect_columns", None)
                if columns is not None and not src.check:
                    names, values = columns()
                else:
                    samples = src.collector.collect()
                    if src.check:
                        samples = _checked(samples)
                    names, values = _columns(samples)
            except Exception as exc:  # a broken source must not stop the others
                self.failed(src, f"{type(exc).__name__}: {exc}", reading)
                continue
            self._take(src, names, values, now, reading)
        self._settle(reading)
        return reading

    def absorb(self, src: Source, samples: list[Sample], now: float | None = None) -> Reading:
        """Take samples of a pushed source as if it had just been read."""
        now = time.time() if now is None else now
        reading = Reading(ts=now, mono=time.monotonic(), sources=(src.collector.name,))
        self._take(src, *_columns(samples), now, reading)
        self._settle(reading)
        return reading

    def failed(self, src: Source, message: str, reading: Reading) -> None:
        src.errors += 1
        if not src.failure:
            reading.failures.append((src.collector.name, message))
            log.warning("source %s failed: %s", src.collector.name, message)
        src.failure = message

    def _take(self, src: Source, names: tuple[str, ...], values: list[float | None], now: float,
              reading: Reading) -> None:
        """Keep a source's read (``names`` and ``values`` by position) as its snapshot.

        Collectors with ``collect_columns`` hand out the same ``names`` tuple read
        after read and a fresh ``values`` list, so this is a handful of C-level
        passes, not Python work per value (the agent's 1 s tick takes ~150 values
        this way); for ``Sample`` lists the names are compared element by element.
        """
        src.failure = ""
        before = src.last[0]
        if names is not before and names != before:
            if frozenset(names) != src.names:
                src.names = frozenset(names)
                reading.dictionary_changed = True
            src.ratio_positions = tuple(i for i, n in enumerate(names)
                                        if n.partition("{")[0].endswith("_ratio"))
        # A NaN or an infinity anywhere makes the sum non-finite; only then is each
        # value looked at (a finite sum of ~1e308-sized values overflowing is the
        # same slow path, with the same result). A None makes sum() raise: rare.
        try:
            total = sum(values)
        except TypeError:
            total = sum(filter(_not_none, values))
        if not isfinite(total):
            values = [v if v is None or isfinite(v) else None for v in values]
        if self.ratio_digits and src.ratio_positions:
            # Here, before change suppression sees it: a wobble in the 7th digit
            # of a ratio is noise, not a change worth sending. round(v * 10**d) /
            # 10**d is a double nearest to a d-digit decimal, as round(v, d) is (for
            # a value within an ulp of a tie the two may pick the other neighbour),
            # at half the cost and without the decimal conversion code that
            # round(v, d) runs on a cold cache. Past 9 digits, or for a value no
            # ratio has (v * 10**d could overflow), round(v, d).
            scale, digits = self._ratio_scale, self.ratio_digits
            fast = digits <= 9
            for i in src.ratio_positions:
                v = values[i]
                if v is not None:
                    values[i] = round(v * scale) / scale if fast and -1e9 < v < 1e9 else round(v, digits)
        src.last = (names, values, now)
        reading.parts.append((names, values))

    def _settle(self, reading: Reading) -> None:
        if not reading.dictionary_changed:
            return
        with self._settling:
            self._rebuild(reading)

    def _rebuild(self, reading: Reading) -> None:
        all_names = set().union(*(s.names for s in self.sources))
        if set(self.dictionary.names) != all_names:
            reading.gone = tuple(set(self.dictionary.names) - all_names)
            # a new object, put in place whole: the loop may be publishing with the
            # current one (version, names and positions must stay together)
            new = SeriesDictionary()
            new.version = self.dictionary.version
            new.rebuild(all_names)
            self.dictionary = new
        else:
            reading.dictionary_changed = False

    def read_all(self) -> Reading:
        """Read every source (the first sweep, and fresh sync reads)."""
        return self.read(self.sources)


_not_none = partial(operator.is_not, None)
_NEXT_DUE = operator.attrgetter("next_due")


def _columns(samples: Iterable[Sample]) -> tuple[tuple[str, ...], list[float | None]]:
    """(names, values) of samples, for collectors that hand out ``Sample``s."""
    samples = samples if isinstance(samples, list) else list(samples)
    return tuple([s.name for s in samples]), [s.value for s in samples]


def _checked(samples: object) -> list[Sample]:
    """A collector's result, checked: a plugin that returns garbage is a failing source."""
    out = list(samples)  # type: ignore[call-overload]
    for s in out:
        if not isinstance(getattr(s, "name", None), str) or not (
            s.value is None or (isinstance(s.value, (int, float)) and not isinstance(s.value, bool))
        ):
            raise TypeError(f"collect() must return Samples (name: str, value: float | None), got {s!r}")
    return out
