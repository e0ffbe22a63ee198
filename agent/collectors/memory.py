"""Memory use and paging activity from /proc/meminfo and /proc/vmstat."""

from __future__ import annotations

import os

from .base import ColumnCollector, Layout, ProcFile

#: /proc/meminfo key -> series; values there are KiB (``kB``) except page counts.
_MEMINFO = {
    b"MemTotal:": "node_memory_total_bytes",
    b"MemFree:": "node_memory_free_bytes",
    b"MemAvailable:": "node_memory_available_bytes",
    b"Buffers:": "node_memory_buffers_bytes",
    b"Cached:": "node_memory_cached_bytes",
    b"SwapCached:": "node_memory_swap_cached_bytes",
    b"Active:": "node_memory_active_bytes",
    b"Inactive:": "node_memory_inactive_bytes",
    b"Mlocked:": "node_memory_mlocked_bytes",
    b"Dirty:": "node_memory_dirty_bytes",
    b"Writeback:": "node_memory_writeback_bytes",
    b"AnonPages:": "node_memory_anon_bytes",
    b"Mapped:": "node_memory_mapped_bytes",
    b"Shmem:": "node_memory_shared_bytes",
    b"Slab:": "node_memory_slab_bytes",
    b"SReclaimable:": "node_memory_slab_reclaimable_bytes",
    b"SUnreclaim:": "node_memory_slab_unreclaimable_bytes",
    b"PageTables:": "node_memory_page_tables_bytes",
    b"CommitLimit:": "node_memory_commit_limit_bytes",
    b"Committed_AS:": "node_memory_committed_bytes",
    b"AnonHugePages:": "node_memory_anon_hugepages_bytes",
}
#: Counted in huge pages, not KiB: multiplied by Hugepagesize.
_HUGEPAGES = {
    b"HugePages_Total:": "node_memory_hugepages_total_bytes",
    b"HugePages_Free:": "node_memory_hugepages_free_bytes",
}

#: /proc/vmstat key -> (series, multiplier to base units; 0 means page size).
_VMSTAT = {
    b"pgpgin": ("node_memory_paged_in_bytes_total", 1024),  # the kernel counts KiB
    b"pgpgout": ("node_memory_paged_out_bytes_total", 1024),
    b"pswpin": ("node_memory_swap_in_bytes_total", 0),
    b"pswpout": ("node_memory_swap_out_bytes_total", 0),
    b"pgfault": ("node_memory_page_faults_total", 1),
    b"pgmajfault": ("node_memory_major_page_faults_total", 1),
    b"oom_kill": ("node_memory_oom_kills_total", 1),
    b"numa_hit": ("node_memory_numa_hit_pages_total", 1),
    b"numa_miss": ("node_memory_numa_miss_pages_total", 1),
    b"numa_foreign": ("node_memory_numa_foreign_pages_total", 1),
    b"numa_local": ("node_memory_numa_local_pages_total", 1),
    b"numa_other": ("node_memory_numa_other_pages_total", 1),
    b"thp_fault_alloc": ("node_memory_thp_fault_alloc_total", 1),
    b"thp_fault_fallback": ("node_memory_thp_fault_fallback_total", 1),
    b"compact_stall": ("node_memory_compaction_stalls_total", 1),
}
#: allocstall_dma, allocstall_normal, ... summed: direct reclaim entered by tasks
#: (kernels before 4.8 had one ``allocstall`` counter).
_ALLOCSTALL = "node_memory_direct_reclaims_total"
_ALLOCSTALL_KEYS = tuple(
    b"allocstall" + zone
    for zone in (b"", b"_dma", b"_dma32", b"_normal", b"_movable", b"_device")
)


_USED = ("node_memory_used_bytes", "node_memory_used_ratio")

_MEMINFO_KEYS = frozenset((*_MEMINFO, *_HUGEPAGES, b"Hugepagesize:"))
_VMSTAT_KEYS = frozenset((*_VMSTAT, *_ALLOCSTALL_KEYS))


class MemoryCollector(ColumnCollector):
    """Memory use (``node_memory_*_bytes``), ``node_memory_used_ratio`` and paging
    counters (faults, swap-in/out, NUMA misses, OOM kills, direct reclaims).

    ``node_memory_used_bytes`` is ``MemTotal - MemAvailable``: memory that cannot be
    had without swapping, which is what a job sees, unlike ``free``'s "used"
    that counts reclaimable caches as free only partly. Keys the kernel lacks are
    absent (not ``None``), so the set of series is fixed for a given kernel.
    """

    name = "memory"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", page_size: int | None = None) -> None:
        self._meminfo = ProcFile(f"{procfs}/meminfo")
        self._vmstat = ProcFile(f"{procfs}/vmstat")
        self._page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self._meminfo_keys = _KeyPicker(_MEMINFO_KEYS)
        self._vmstat_keys = _KeyPicker(_VMSTAT_KEYS)
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read meminfo and vmstat; a missing file drops its series only."""
        names: list[str] = []
        values: list[float | None] = []
        self._from_meminfo(names, values)
        self._from_vmstat(names, values)
        return self._layout(names), values

    def _from_meminfo(self, names: list[str], values: list[float | None]) -> None:
        raw = self._meminfo.read()
        if not raw:
            return
        kib = self._meminfo_keys.pick(raw.replace(b" kB", b""))
        for key, name in _MEMINFO.items():
            v = kib.get(key)
            if v is not None:
                names.append(name)
                values.append(v * 1024)
        huge = kib.get(b"Hugepagesize:")
        if huge is not None:
            for key, name in _HUGEPAGES.items():
                v = kib.get(key)
                if v is not None:
                    names.append(name)
                    values.append(v * huge * 1024)
        total, avail = kib.get(b"MemTotal:"), kib.get(b"MemAvailable:")
        if total is not None and avail is not None:
            used = total - avail
            names += _USED
            values.append(used * 1024)
            values.append(used / total if total > 0 else None)

    def _from_vmstat(self, names: list[str], values: list[float | None]) -> None:
        raw = self._vmstat.read()
        if not raw:
            return
        counts = self._vmstat_keys.pick(raw)
        for key, (name, mult) in _VMSTAT.items():
            v = counts.get(key)
            if v is not None:
                names.append(name)
                values.append(v * (mult or self._page_size))
        stalls = [counts[k] for k in _ALLOCSTALL_KEYS if k in counts]
        if stalls:
            names.append(_ALLOCSTALL)
            values.append(sum(stalls))


class _KeyPicker:
    """Picks the wanted ``key value`` pairs of a /proc file, as ints.

    The first read finds where the wanted keys sit among the file's tokens; later
    reads only check that the keys are still there and convert those values. The
    key order of meminfo and vmstat is fixed for a running kernel, so this skips
    building a ~200-entry dict every second (half the cost of the memory source).
    Any mismatch falls back to a full parse and learns the positions again.
    """

    def __init__(self, wanted: frozenset[bytes]) -> None:
        self._wanted = wanted
        self._positions: list[tuple[bytes, int]] = []

    def pick(self, raw: bytes) -> dict[bytes, int]:
        tokens = raw.split()
        out = {}
        try:
            for key, i in self._positions:
                if tokens[i - 1] != key:
                    break
                out[key] = int(tokens[i])
            else:
                if self._positions:
                    return out
        except (IndexError, ValueError):
            pass
        return self._learn(raw, tokens)

    def _learn(self, raw: bytes, tokens: list[bytes]) -> dict[bytes, int]:
        positions = []
        if len(tokens) % 2 == 0:
            positions = [(tokens[i], i + 1) for i in range(0, len(tokens), 2) if tokens[i] in self._wanted]
            pairs = {key: tokens[i] for key, i in positions}
        else:
            # A line of unexpected shape: parse line by line so it cannot shift
            # the others, and do not trust positions for the next read.
            pairs = {}
            for line in raw.split(b"\n"):
                parts = line.split()
                if len(parts) == 2 and parts[0] in self._wanted:
                    pairs[parts[0]] = parts[1]
        out = {}
        for key, value in pairs.items():
            try:
                out[key] = int(value)
            except ValueError:
                positions = []  # a non-number where a number was expected
        self._positions = positions
        return out
