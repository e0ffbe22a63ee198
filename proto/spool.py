"""The bounded spool of unacknowledged stored frames.

Every sender of stored frames keeps each one here, as encoded bytes, until the
root acknowledges it after commit. The spool is bounded by age and by bytes;
when it overflows the oldest frames go first and the loss is counted, so the
caller can report it as an EVENT — never silently.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator


@dataclass(slots=True)
class SpoolEntry:
    seq: int
    data: bytes
    created: float  # monotonic time the frame entered the spool
    sent: float  # monotonic time it was last sent (0: never)


class Spool:
    """Unacknowledged frames in seq order, bounded by ``max_bytes`` and ``max_age``."""

    def __init__(
        self,
        max_bytes: int = 256 * 1024 * 1024,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[int, SpoolEntry] = OrderedDict()
        self._bytes = 0
        #: frames dropped by overflow and not yet reported
        self.dropped_unreported = 0
        self.dropped_total = 0
        self.acked_total = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, seq: int, data: bytes) -> None:
        """Keep a frame until it is acknowledged; evict the oldest beyond the bounds."""
        now = self._clock()
        replaced = self._entries.get(seq)
        if replaced is not None:  # same seq again: keep its place, count its bytes once
            self._bytes -= len(replaced.data)
        self._entries[seq] = SpoolEntry(seq, data, now, 0.0)
        self._bytes += len(data)
        self._evict(now)

    def _evict(self, now: float) -> None:
        while self._entries:
            seq, first = next(iter(self._entries.items()))
            too_big = self._bytes > self.max_bytes and len(self._entries) > 1
            too_old = now - first.created > self.max_age
            if not (too_big or too_old):
                break
            self._drop(seq)
            self.dropped_unreported += 1
            self.dropped_total += 1

    def _drop(self, seq: int) -> SpoolEntry | None:
        entry = self._entries.pop(seq, None)
        if entry is not None:
            self._bytes -= len(entry.data)
        return entry

    def ack(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged frames; returns how many were held."""
        n = 0
        for s in seqs:
            if self._drop(s) is not None:
                n += 1
        self.acked_total += n
        return n

    def ack_ranges(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Like ``ack`` for inclusive ranges, without walking seqs we never held."""
        n = 0
        for lo, hi in ranges:
            if hi - lo > len(self._entries):
                n += self.ack([s for s in self._entries if lo <= s <= hi])
            else:
                n += self.ack(range(lo, hi + 1))
        return n

    def mark_sent(self, seq: int, when: float) -> None:
        entry = self._entries.get(seq)
        if entry is not None:
            entry.sent = when

    def take_drop_count(self) -> int:
        """Frames lost to overflow since the last call (for the loss EVENT)."""
        n, self.dropped_unreported = self.dropped_unreported, 0
        return n

    def due(self, older_than: float) -> Iterator[SpoolEntry]:
        """Entries never sent, or last sent before ``older_than`` (monotonic)."""
        for e in self._entries.values():
            if e.sent < older_than:
                yield e

    def all(self) -> Iterator[SpoolEntry]:
        return iter(list(self._entries.values()))

    def oldest_age(self) -> float:
        if not self._entries:
            return 0.0
        return self._clock() - next(iter(self._entries.values())).created

    def expire(self) -> None:
        """Apply the age bound even when nothing new arrives."""
        self._evict(self._clock())
