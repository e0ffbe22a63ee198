"""Block device I/O counters from /proc/diskstats."""

from __future__ import annotations

import re
import time
from itertools import chain, repeat
from operator import mul, sub, truediv
from typing import Callable

from .base import ColumnCollector, Layout, ProcFile, Shape, tuple_getter, series

#: Partitions (their I/O is already in the whole disk) and devices that carry no
#: real storage traffic. A regex on names avoids a sysfs walk every collect.
DEFAULT_EXCLUDE = (
    r"^(ram|loop|fd|sr|zram|nbd)\d+$"
    r"|^(h|s|v|xv)d[a-z]+\d+$"
    r"|^(nvme\d+n\d+|mmcblk\d+|md\d+)p\d+$"
)

#: Column (0-based, after major, minor, name) -> (metric, scale to base units).
#: Sectors are always 512 bytes in diskstats whatever the device's block size.
_COLUMNS = (
    (0, "node_disk_reads_completed_total", 1.0),
    (1, "node_disk_reads_merged_total", 1.0),
    (2, "node_disk_read_bytes_total", 512.0),
    (3, "node_disk_read_time_seconds_total", 0.001),
    (4, "node_disk_writes_completed_total", 1.0),
    (5, "node_disk_writes_merged_total", 1.0),
    (6, "node_disk_written_bytes_total", 512.0),
    (7, "node_disk_write_time_seconds_total", 0.001),
    (8, "node_disk_io_now", 1.0),
    (9, "node_disk_io_time_seconds_total", 0.001),
    (10, "node_disk_io_time_weighted_seconds_total", 0.001),
)
_IO_MS = 9
#: values a device adds: its counters, then its busy ratio
_PER_DEVICE = len(_COLUMNS) + 1
#: each device's scales in a plan (the last, io_ms again, gives way to the busy ratio)
_SCALES = [scale for _, _, scale in _COLUMNS] + [1.0]

_NAME_CACHE_MAX = 4096


class DiskIoCollector(ColumnCollector):
    """Per-device I/O counters (``node_disk_*_total{device=...}``, node_exporter's
    names) plus ``node_disk_io_now`` and ``node_disk_busy_ratio{device=...}``: the
    share of wall time the device had I/O in flight since the previous collect
    (``None`` the first time), so a bounded mask can flag a saturated disk.

    The file's layout is learnt from a read taken line by line (``_DiskPlan``);
    later reads check it and pick, scale and compare their counters in a few
    C-level calls.
    """

    name = "diskio"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(
        self,
        procfs: str = "/proc",
        exclude: str = DEFAULT_EXCLUDE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = ProcFile(f"{procfs}/diskstats")
        self._exclude = re.compile(exclude)
        self._clock = clock
        self._names: dict[bytes, tuple[tuple[str, ...], str] | None] = {}
        # The previous read: its devices, its time and their io_ms counters.
        self._prev_devs: tuple[bytes, ...] = ()
        self._prev_now = 0.0
        self._prev_io: list[int] = []
        self._plan: _DiskPlan | None = None
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/diskstats once; no samples if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        now = self._clock()
        lines = raw.split(b"\n")
        plan = self._plan
        if plan is not None and self._prev_devs is plan.devs:
            got = self._by_plan(lines, now, plan)
            if got is not None:
                return plan.names, got
        names: list[str] = []
        values: list[float | None] = []
        devs: list[bytes] = []
        kept = self._by_lines(lines, now, names, values, devs)
        series_names = self._layout(names)
        self._plan = _DiskPlan.learn(lines, kept, series_names, devs) if kept is not None else None
        self._prev_devs = self._plan.devs if self._plan is not None else tuple(devs)
        return series_names, values

    def _by_plan(self, lines: list[bytes], now: float, plan: _DiskPlan) -> list[float | None] | None:
        """The read by the learnt layout; ``None`` when a device came or went or a
        counter is not a number."""
        counters = plan.counters(lines)
        if counters is None:
            return None
        # Each device's counters end with io_ms a second time: its place in the
        # values takes the busy ratio.
        io = counters[_PER_DEVICE - 1::_PER_DEVICE]
        values: list[float | None] = list(map(mul, counters, plan.scales))
        values[_PER_DEVICE - 1::_PER_DEVICE] = self._busy_all(now, io)
        self._prev_now, self._prev_io = now, io
        return values

    def _busy_all(self, now: float, io: list[int]) -> list[float | None]:
        """The busy ratios of devices read in the previous read's order, from their
        io_ms counters now."""
        elapsed = now - self._prev_now
        if elapsed <= 0:
            return [None] * len(io)
        deltas = list(map(sub, io, self._prev_io))
        if deltas and min(deltas) < 0:
            return [None if d < 0 else min(d / 1000.0 / elapsed, 1.0) for d in deltas]
        return list(map(min, map(truediv, map(truediv, deltas, repeat(1000.0)), repeat(elapsed)), repeat(1.0)))

    def _by_lines(
        self, lines: list[bytes], now: float, names: list[str], values: list[float | None], devs: list[bytes]
    ) -> list[bool] | None:
        """Fill ``names``, ``values`` and the devices read line by line; returns
        which lines gave values, or ``None`` when a line that might have given some
        had a counter that is not a number (it may be one next time: learn again
        then)."""
        prev = dict(zip(self._prev_devs, self._prev_io))
        io: list[int] = []
        kept: list[bool] = []
        numbers = True
        for line in lines:
            fields = line.split()
            dev_names = self._names_of(fields[2]) if len(fields) >= 14 else None
            counters = None
            if dev_names is not None:
                try:
                    counters = [int(f) for f in fields[3:14]]
                except ValueError:
                    numbers = False
            kept.append(counters is not None)
            if counters is None:
                continue
            metrics, busy_name = dev_names
            names += metrics
            values += [counters[col] * scale for col, _, scale in _COLUMNS]
            names.append(busy_name)
            values.append(self._busy(prev.get(fields[2]), now, counters[_IO_MS]))
            devs.append(fields[2])
            io.append(counters[_IO_MS])
        self._prev_now, self._prev_io = now, io
        return kept if numbers else None

    def _busy(self, prev_io: int | None, now: float, io_ms: int) -> float | None:
        if prev_io is None or now <= self._prev_now or io_ms < prev_io:
            return None
        return min((io_ms - prev_io) / 1000.0 / (now - self._prev_now), 1.0)

    def _names_of(self, dev: bytes) -> tuple[tuple[str, ...], str] | None:
        # Cached per device: formatting ~12 names per device every second would
        # cost more than parsing the line.
        if dev in self._names:
            return self._names[dev]
        if len(self._names) > _NAME_CACHE_MAX:  # names that churn must not leak memory
            self._names.clear()
        name = dev.decode(errors="replace")
        entry = None
        if not self._exclude.search(name):
            metrics = tuple(series(m, device=name) for _, m, _ in _COLUMNS)
            entry = (metrics, series("node_disk_busy_ratio", device=name))
        self._names[dev] = entry
        return entry


class _DiskPlan:
    """/proc/diskstats as learnt from one read, line by line: the devices kept
    (their names and where their counters sit among their tokens: ``shape``, io_ms
    twice, see ``DiskIoCollector._by_plan``), the devices left out by name (the
    start of their line up to the name, which alone decides that) and any other
    line (whole). Loop and RAM devices can be most of the file: their lines are
    not cut into tokens."""

    __slots__ = (
        "names", "devs", "scales", "shape", "_lines", "_kept", "_excluded", "_starts", "_other", "_others",
    )

    def __init__(self, names: tuple[str, ...], lines: list[bytes], kept: list[bool]) -> None:
        self.names = names
        self._lines = len(lines)
        kept_at: list[int] = []
        excluded_at: list[int] = []
        other_at: list[int] = []
        starts: list[bytes] = []
        for i, (line, taken) in enumerate(zip(lines, kept)):
            head = line.split(None, 3)
            if taken:
                kept_at.append(i)
            elif len(head) == 4 and len(line.split()) >= 14:
                excluded_at.append(i)
                starts.append(line[:len(line) - len(head[3])])
            else:
                other_at.append(i)
        self._kept, self._excluded, self._other = tuple_getter(kept_at), tuple_getter(excluded_at), tuple_getter(other_at)
        self._starts = starts
        self._others = self._other(lines)
        tokens = [lines[i].split() for i in kept_at]
        self.devs = tuple(fields[2] for fields in tokens)
        self.scales = _SCALES * len(tokens)
        self.shape = _kept_shape(tokens)

    def counters(self, lines: list[bytes]) -> list[int] | None:
        """The kept devices' counters (io_ms twice) of a read cut into ``lines``;
        ``None`` when the layout is not the learnt one or a counter is not a number."""
        if len(lines) != self._lines or self._other(lines) != self._others:
            return None
        if not all(map(bytes.startswith, self._excluded(lines), self._starts)):
            return None
        # Each kept line's device name is a key of the shape: a line with more or
        # fewer tokens moves a name or changes the count.
        tokens = chain.from_iterable(map(bytes.split, self._kept(lines)))
        return self.shape.ints(list(tokens))

    @classmethod
    def learn(
        cls, lines: list[bytes], kept: list[bool], names: tuple[str, ...], devs: list[bytes]
    ) -> _DiskPlan | None:
        """The plan of a read cut into ``lines`` whose ``kept`` lines gave ``names``
        for ``devs``; ``None`` when a device is there twice (the busy ratio pairs
        a device with its previous counters by name)."""
        if len(set(devs)) != len(devs):
            return None
        return cls(names, lines, kept)


def _kept_shape(lines: list[list[bytes]]) -> Shape:
    """The shape of the kept lines' tokens (given line by line): their device
    names as keys, their counters and io_ms again as values."""
    keys: list[int] = []
    positions: list[int] = []
    n = 0
    for fields in lines:
        keys.append(n + 2)
        positions += [n + 3 + col for col, _, _ in _COLUMNS]
        positions.append(n + 3 + _IO_MS)
        n += len(fields)
    return Shape(n, keys, [fields[2] for fields in lines], positions)
