"""Block device I/O counters from /proc/diskstats."""

from __future__ import annotations

import re
import time
from typing import Callable

from .base import ColumnCollector, Layout, ProcFile, series

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

_NAME_CACHE_MAX = 4096


class DiskIoCollector(ColumnCollector):
    """Per-device I/O counters (``node_disk_*_total{device=...}``, node_exporter's
    names) plus ``node_disk_io_now`` and ``node_disk_busy_ratio{device=...}``: the
    share of wall time the device had I/O in flight since the previous collect
    (``None`` the first time), so a bounded mask can flag a saturated disk.
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
        self._prev: dict[bytes, tuple[float, int]] = {}
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/diskstats once; no samples if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        now = self._clock()
        names: list[str] = []
        values: list[float | None] = []
        seen: dict[bytes, tuple[float, int]] = {}
        for line in raw.split(b"\n"):
            fields = line.split()
            if len(fields) < 14:
                continue
            dev = fields[2]
            dev_names = self._names_of(dev)
            if dev_names is None:
                continue
            try:
                counters = [int(f) for f in fields[3:14]]
            except ValueError:
                continue
            metrics, busy_name = dev_names
            names += metrics
            values += [counters[col] * scale for col, _, scale in _COLUMNS]
            seen[dev] = (now, counters[_IO_MS])
            names.append(busy_name)
            values.append(self._busy(dev, now, counters[_IO_MS]))
        self._prev = seen
        return self._layout(names), values

    def _busy(self, dev: bytes, now: float, io_ms: int) -> float | None:
        prev = self._prev.get(dev)
        if prev is None or now <= prev[0] or io_ms < prev[1]:
            return None
        return min((io_ms - prev[1]) / 1000.0 / (now - prev[0]), 1.0)

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
