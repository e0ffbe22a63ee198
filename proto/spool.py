"""The bounded spool of unacknowledged stored frames.

Every sender of stored frames keeps each one here, as encoded bytes, until the
root acknowledges it after commit. Entries are keyed by (incarnation, seq): after
a restart, frames of the previous incarnation that were never acknowledged are
recovered from disk and replayed with the new ones.

With a directory, every frame is also appended to a segment file (one write per
frame, no fsync: it survives a killed process, which is what happens to daemons;
the page cache is flushed by the OS). Only ``memory_bytes`` of the newest frames
stay in memory; older ones are read back from their segment when replayed. A
segment whose frames are all acknowledged is deleted.

The spool is bounded by age and by bytes; beyond either bound the oldest frames go
first and the loss is counted, so the caller reports it as an EVENT — never
silently.
"""

from __future__ import annotations

import errno
import logging
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

log = logging.getLogger("clumon.spool")

_RECORD = struct.Struct("<QQI")  # incarnation, seq, length
#: a length of all ones marks an ack record: (incarnation, lo, marker, hi)
_ACK_MARK = 0xFFFFFFFF
_HI = struct.Struct("<Q")
SEGMENT_BYTES = 4 * 1024 * 1024
#: ack records kept for a write while none works (a failing disk), ~24 bytes each
_MAX_UNWRITTEN_ACKS = 65536

Key = tuple[int, int]


@dataclass(slots=True)
class SpoolEntry:
    incarnation: int
    seq: int
    data: bytes | None  # None: only on disk
    size: int
    created: float  # monotonic time the frame entered the spool
    sent: float  # monotonic time it was last sent (0: never)
    segment: int = 0  # 0: not on disk; >0 this process's segments; <0 recovered ones
    offset: int = 0


class Spool:
    """Unacknowledged frames in arrival order, bounded by ``max_bytes`` and ``max_age``."""

    def __init__(
        self,
        max_bytes: int = 256 * 1024 * 1024,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        directory: Path | str | None = None,
        incarnation: int = 0,
        memory_bytes: int = 16 * 1024 * 1024,
    ):
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.memory_bytes = memory_bytes
        self.incarnation = incarnation
        self._clock = clock
        self._entries: OrderedDict[Key, SpoolEntry] = OrderedDict()
        self._bytes = 0
        self._mem = 0
        self._dir = Path(directory) if directory is not None else None
        self._pinned: Key | None = None
        self._segments: dict[int, Path] = {}
        self._live: dict[int, int] = {}
        self._seg_no = 0
        self._seg_fh = None
        self._seg_size = 0
        #: ack records not written yet (they go with the next frame's write)
        self._acks_unwritten: list[bytes] = []
        #: segment writes that failed (the frames stayed in memory only)
        self.disk_errors = 0
        self._disk_warned_at = -1e18
        #: of ``_mem``, the bytes of frames also on disk (the ones trimming may drop)
        self._mem_on_disk = 0
        #: frames dropped by overflow and not yet reported
        self.dropped_unreported = 0
        self.dropped_total = 0
        #: of those, frames that were never sent: surely not stored
        self.dropped_unsent_total = 0
        self.acked_total = 0
        self.recovered = 0
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._recover()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    # --- disk ------------------------------------------------------------------------

    def _segment_path(self, no: int) -> Path:
        return self._dir / f"spool-{self.incarnation}-{no:06d}.seg"

    def _append(self, entry: SpoolEntry, data: bytes) -> None:
        if self._seg_fh is None or self._seg_size >= SEGMENT_BYTES:
            self._roll()
        # ack records waiting for a write go in the same one, ahead of the frame
        acks = self._acks_unwritten
        head = b"".join(acks) if acks else b""
        at = self._write(head + _RECORD.pack(entry.incarnation, entry.seq, len(data)) + data)
        acks.clear()
        entry.segment, entry.offset = self._seg_no, at + len(head) + _RECORD.size
        self._mem_on_disk += entry.size
        self._live[self._seg_no] = self._live.get(self._seg_no, 0) + 1

    def _write(self, blob: bytes) -> int:
        """Append to the open segment; returns where ``blob`` begins. A short write
        raises OSError like a failed one (the segment is then left)."""
        at = self._seg_size
        written = self._seg_fh.write(blob)
        if written != len(blob):
            raise OSError(errno.ENOSPC, f"short write ({written} of {len(blob)} bytes)")
        self._seg_size += written
        return at

    def _disk_failed(self, exc: OSError) -> None:
        """A segment write failed (disk full, I/O error): the frame stays in memory
        only, and the segment is left (a torn record can only be its last); the
        next frame tries a new one. Logged once a minute, counted always."""
        self.disk_errors += 1
        now = self._clock()
        if now - self._disk_warned_at >= 60.0:
            self._disk_warned_at = now
            log.warning("spool: writing segment %s failed (%s): frames kept in memory only until writes work "
                        "(%d failed writes)", self._segment_path(self._seg_no).name, exc, self.disk_errors)
        if self._seg_fh is not None:
            try:
                self._seg_fh.close()
            except OSError:
                pass
            self._seg_fh = None
            self._maybe_delete(self._seg_no, closing=True)

    def flush(self) -> None:
        """Write the ack records kept for the next frame's write (the uplink's tick
        calls this, so they wait a second at most when no frame comes)."""
        if self._acks_unwritten and self._seg_fh is not None:
            try:
                self._write(b"".join(self._acks_unwritten))
            except OSError as exc:  # kept: written whole to the next segment
                self._disk_failed(exc)
                return
            self._acks_unwritten.clear()

    def _append_acks(self, incarnation: int, seqs: list[int]) -> None:
        """Record acks on disk too, so a restarted process does not replay them.

        If the segment holding this record is deleted before an older one, the older
        one's acknowledged frames come back after a crash and are sent again: the
        root stores each once, so that costs bandwidth, not correctness.
        """
        seqs.sort()
        records = []
        lo = hi = seqs[0]
        for s in seqs[1:] + [None]:
            if s is not None and s == hi + 1:
                hi = s
                continue
            records.append(_RECORD.pack(incarnation, lo, _ACK_MARK) + _HI.pack(hi))
            if s is not None:
                lo = hi = s
        # Written with the next frame (or by the next tick's flush): one write a
        # frame instead of two. A crash before that write replays those frames,
        # which the root stores once.
        self._acks_unwritten.extend(records)
        if len(self._acks_unwritten) > _MAX_UNWRITTEN_ACKS:  # a disk failing for long
            del self._acks_unwritten[:_MAX_UNWRITTEN_ACKS // 2]  # costs a replay, no data

    def _roll(self) -> None:
        self.flush()
        if self._seg_fh is not None:
            self._seg_fh.close()
        if self._seg_no:  # also one left after a failed write
            self._maybe_delete(self._seg_no, closing=True)
        self._seg_no += 1
        path = self._segment_path(self._seg_no)
        self._segments[self._seg_no] = path
        self._seg_fh = open(path, "ab", buffering=0)
        self._seg_size = 0

    def _maybe_delete(self, no: int, closing: bool = False) -> None:
        if self._live.get(no, 0) > 0 or (no == self._seg_no and not closing):
            return
        path = self._segments.pop(no, None)
        self._live.pop(no, None)
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # a read-only or failing disk: the file stays, nothing else
                log.warning("spool: cannot delete acknowledged segment %s: %s", path.name, exc)

    def _read_back(self, entry: SpoolEntry) -> bytes | None:
        path = self._segments.get(entry.segment)
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                fh.seek(entry.offset)
                return fh.read(entry.size)
        except OSError as exc:
            log.warning("spool segment %s unreadable: %s", path, exc)
            return None

    def _recover(self) -> None:
        """Load frames a previous process left unacknowledged (its segments)."""
        old = sorted(self._dir.glob("spool-*.seg"))
        now = self._clock()
        acked: list[tuple[int, int, int]] = []
        for path in old:
            no = -(len(self._segments) + 1)  # negative numbers: recovered segments
            self._segments[no] = path
            data = path.read_bytes()
            pos = 0
            while pos + _RECORD.size <= len(data):
                inc, seq, n = _RECORD.unpack_from(data, pos)
                pos += _RECORD.size
                if n == _ACK_MARK:
                    if pos + _HI.size > len(data):
                        break
                    acked.append((inc, seq, _HI.unpack_from(data, pos)[0]))
                    pos += _HI.size
                    continue
                if pos + n > len(data):
                    break  # torn last record of a killed process
                entry = SpoolEntry(inc, seq, None, n, now, 0.0, no, pos)
                self._entries[(inc, seq)] = entry
                self._live[no] = self._live.get(no, 0) + 1
                self._bytes += n
                pos += n
                self.recovered += 1
        for inc, lo, hi in acked:
            for key in [k for k in self._entries if k[0] == inc and lo <= k[1] <= hi]:
                self._drop(key)
                self.recovered -= 1
        for no in [n for n in self._segments if not self._live.get(n)]:
            self._maybe_delete(no, closing=True)
        if self.recovered:
            log.info("spool: recovered %d unacknowledged frames from %d segment(s)", self.recovered, len(old))

    # --- frames ----------------------------------------------------------------------

    def add(self, seq: int, data: bytes, incarnation: int | None = None) -> None:
        """Keep a frame until it is acknowledged; evict the oldest beyond the bounds."""
        inc = self.incarnation if incarnation is None else incarnation
        now = self._clock()
        self._drop((inc, seq))  # same key again: keep it once
        entry = SpoolEntry(inc, seq, data, len(data), now, 0.0)
        if self._dir is not None:
            try:
                self._append(entry, data)
            except OSError as exc:  # a full or failing disk must not lose the frame
                self._disk_failed(exc)
        self._entries[(inc, seq)] = entry
        self._bytes += entry.size
        self._mem += entry.size
        self._evict(now)
        self._trim_memory()

    def _trim_memory(self) -> None:
        """Keep only the newest ``memory_bytes`` in memory; the rest is on disk.

        Frames kept in memory because their write failed cannot go: while they
        alone exceed the bound nothing is walked (``_mem_on_disk`` is 0)."""
        if self._dir is None or self._mem <= self.memory_bytes or not self._mem_on_disk:
            return
        for entry in self._entries.values():
            if self._mem <= self.memory_bytes or not self._mem_on_disk:
                break
            if entry.data is not None and entry.segment > 0:
                entry.data = None
                self._mem -= entry.size
                self._mem_on_disk -= entry.size

    def pin(self, seq: int, incarnation: int | None = None) -> None:
        """Never evict this frame (the current HELLO: the frames after it need it);
        the previous pin is released. It still leaves on its ack."""
        self._pinned = (self.incarnation if incarnation is None else incarnation, seq)

    def _evict(self, now: float) -> None:
        while self._entries:
            it = iter(self._entries.items())
            key, first = next(it)
            if key == self._pinned:
                nxt = next(it, None)
                if nxt is None:
                    break
                key, first = nxt
            keep = 2 if self._pinned in self._entries else 1  # the newest, and the pinned
            too_big = self._bytes > self.max_bytes and len(self._entries) > keep
            too_old = now - first.created > self.max_age
            if not (too_big or too_old):
                break
            entry = self._drop(key)
            self.dropped_unreported += 1
            self.dropped_total += 1
            if entry is not None and entry.sent == 0.0:
                self.dropped_unsent_total += 1

    def _drop(self, key: Key) -> SpoolEntry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
            if entry.data is not None:
                self._mem -= entry.size
                if entry.segment > 0:
                    self._mem_on_disk -= entry.size
            if entry.segment != 0:
                self._live[entry.segment] -= 1
                self._maybe_delete(entry.segment)
        return entry

    def data(self, entry: SpoolEntry) -> bytes | None:
        """A frame's bytes, from memory or read back from its segment."""
        return entry.data if entry.data is not None else self._read_back(entry)

    def ack(self, seqs: Iterable[int], incarnation: int | None = None) -> int:
        """Forget acknowledged frames; returns how many were held."""
        inc = self.incarnation if incarnation is None else incarnation
        dropped = [s for s in seqs if self._drop((inc, s)) is not None]
        self.acked_total += len(dropped)
        if dropped and self._dir is not None:
            self._append_acks(inc, dropped)
        return len(dropped)

    def ack_ranges(self, ranges: Iterable[tuple[int, int]], incarnation: int | None = None) -> int:
        """Like ``ack`` for inclusive ranges, without walking seqs we never held."""
        inc = self.incarnation if incarnation is None else incarnation
        n = 0
        for lo, hi in ranges:
            if hi - lo > len(self._entries):
                n += self.ack([s for (i, s) in list(self._entries) if i == inc and lo <= s <= hi], inc)
            else:
                n += self.ack(range(lo, hi + 1), inc)
        return n

    def mark_sent(self, seq: int, when: float, incarnation: int | None = None) -> None:
        entry = self._entries.get((self.incarnation if incarnation is None else incarnation, seq))
        if entry is not None:
            entry.sent = when

    def take_drop_count(self) -> int:
        """Frames lost to overflow since the last call (for the loss EVENT)."""
        n, self.dropped_unreported = self.dropped_unreported, 0
        return n

    def due(self, older_than: float) -> Iterator[SpoolEntry]:
        """Entries never sent, or last sent before ``older_than`` (monotonic)."""
        for e in list(self._entries.values()):
            if e.sent < older_than:
                yield e

    def holds(self, seq: int, incarnation: int | None = None) -> bool:
        """Whether a frame is still kept here (neither acknowledged nor dropped)."""
        return (self.incarnation if incarnation is None else incarnation, seq) in self._entries

    def all(self) -> Iterator[SpoolEntry]:
        return iter(list(self._entries.values()))

    def incarnations(self) -> set[int]:
        return {inc for inc, _ in self._entries}

    def oldest_age(self) -> float:
        if not self._entries:
            return 0.0
        return self._clock() - next(iter(self._entries.values())).created

    def expire(self) -> None:
        """Apply the age bound even when nothing new arrives."""
        self._evict(self._clock())

    def close(self) -> None:
        self.flush()
        if self._seg_fh is not None:
            self._seg_fh.close()
            self._seg_fh = None
