"""Memory use and paging activity from /proc/meminfo and /proc/vmstat."""

from __future__ import annotations

import os
from itertools import repeat
from operator import mul

from .base import ColumnCollector, Layout, ProcFile, Shape, learn_keyed

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

#: every key read from each file, in the order of the series
_MEMINFO_WANTED = (*_MEMINFO, *_HUGEPAGES, b"Hugepagesize:")
_VMSTAT_WANTED = (*_VMSTAT, *_ALLOCSTALL_KEYS)


class MemoryCollector(ColumnCollector):
    """Memory use (``node_memory_*_bytes``), ``node_memory_used_ratio`` and paging
    counters (faults, swap-in/out, NUMA misses, OOM kills, direct reclaims).

    ``node_memory_used_bytes`` is ``MemTotal - MemAvailable``: memory that cannot be
    had without swapping, which is what a job sees, unlike ``free``'s "used"
    that counts reclaimable caches as free only partly. Keys the kernel lacks are
    absent (not ``None``), so the set of series is fixed for a given kernel.

    Each file's layout is learnt once (``Shape``); a read then picks and scales
    its values with a few C-level calls.
    """

    name = "memory"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", page_size: int | None = None) -> None:
        self._meminfo = ProcFile(f"{procfs}/meminfo")
        self._vmstat = ProcFile(f"{procfs}/vmstat")
        self._page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self._meminfo_plan = _MeminfoPlan(None, ())
        self._vmstat_plan = _VmstatPlan(None, (), self._page_size)
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
        plan = self._meminfo_plan
        kib = plan.shape.ints(raw.split()) if plan.shape is not None else None
        if kib is None:
            shape, present, kib = learn_keyed(raw, _MEMINFO_WANTED, b"kB")
            plan = self._meminfo_plan = _MeminfoPlan(shape, present)
        names += plan.names
        plain = plan.plain
        values += map(mul, kib[:plain], repeat(1024))
        if plan.huge:
            values += map(mul, kib[plain:plain + plan.huge], repeat(kib[-1] * 1024))
        if plan.avail_at is not None:
            total = kib[0]
            used = total - kib[plan.avail_at]
            values.append(used * 1024)
            values.append(used / total if total > 0 else None)

    def _from_vmstat(self, names: list[str], values: list[float | None]) -> None:
        raw = self._vmstat.read()
        if not raw:
            return
        plan = self._vmstat_plan
        counts = plan.shape.ints(raw.split()) if plan.shape is not None else None
        if counts is None:
            shape, present, counts = learn_keyed(raw, _VMSTAT_WANTED)
            plan = self._vmstat_plan = _VmstatPlan(shape, present, self._page_size)
        names += plan.names
        values += map(mul, counts, plan.scales)
        if plan.stalls:
            values.append(sum(counts[len(plan.scales):]))


class _MeminfoPlan:
    """The series of the meminfo keys present, and where the derived ones come from."""

    __slots__ = ("shape", "names", "plain", "huge", "avail_at")

    def __init__(self, shape: Shape | None, present: tuple[bytes, ...]) -> None:
        self.shape = shape
        plain = [k for k in present if k in _MEMINFO]
        #: huge-page counts, multiplied by Hugepagesize (the last value) when it is there
        huge = [k for k in present if k in _HUGEPAGES] if b"Hugepagesize:" in present else []
        self.plain, self.huge = len(plain), len(huge)
        names = [_MEMINFO[k] for k in plain] + [_HUGEPAGES[k] for k in huge]
        #: MemTotal comes first when present; used memory needs MemAvailable too
        self.avail_at = None
        if present[:1] == (b"MemTotal:",) and b"MemAvailable:" in plain:
            self.avail_at = plain.index(b"MemAvailable:")
            names += _USED
        self.names = tuple(names)


class _VmstatPlan:
    """The series of the vmstat keys present and their scale to base units; the
    ``allocstall*`` counters (after the others) are summed into one."""

    __slots__ = ("shape", "names", "scales", "stalls")

    def __init__(self, shape: Shape | None, present: tuple[bytes, ...], page_size: int) -> None:
        self.shape = shape
        keys = [k for k in present if k in _VMSTAT]
        self.scales = [_VMSTAT[k][1] or page_size for k in keys]
        self.stalls = len(present) > len(keys)
        self.names = tuple([_VMSTAT[k][0] for k in keys] + ([_ALLOCSTALL] if self.stalls else []))
