"""CPU time by mode and kernel activity counters, from one read of /proc/stat."""

from __future__ import annotations

import os

from .base import ColumnCollector, Layout, ProcFile, series

#: The first eight columns of a ``cpu`` line. guest and guest_nice are left out:
#: the kernel already counts them inside user and nice, so adding them would
#: count that time twice.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

_RATIO = tuple(series("node_cpu_ratio", mode=m) for m in MODES)
_SECONDS = tuple(series("node_cpu_seconds_total", mode=m) for m in MODES)
#: the ratios of a first read, or of a second with no tick counted (appended, never changed)
_NONE_PER_MODE: tuple[None, ...] = (None,) * len(MODES)

#: /proc/stat line key -> series. These come from the same read as CPU time, so
#: they cost nothing extra here (a separate source would read the file twice).
_KERNEL = {
    b"ctxt": "node_context_switches_total",
    b"intr": "node_intr_total",
    b"softirq": "node_softirqs_total",
    b"processes": "node_forks_total",
    b"procs_running": "node_procs_running",
    b"procs_blocked": "node_procs_blocked",
}


class CpuCollector(ColumnCollector):
    """Whole-node CPU ratios by mode, CPU seconds, and kernel activity counters.

    Series: ``node_cpu_ratio{mode=...}`` (share of the CPU time spent in each mode
    since the previous ``collect()``; ``None`` on the first call),
    ``node_cpu_seconds_total{mode=...}`` (the raw counters, so a receiver can
    average exactly over any window even when change suppression drops ratios),
    and the kernel counters of ``_KERNEL``. With ``per_cpu=True`` it adds
    ``node_cpu_ratio{cpu="N",mode=...}`` for each CPU (ratios only: counters per
    CPU would double a count that is already large on big nodes).
    """

    name = "cpu"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", per_cpu: bool = False) -> None:
        self._file = ProcFile(f"{procfs}/stat")
        self._per_cpu = per_cpu
        self._tick = 1.0 / os.sysconf("SC_CLK_TCK")
        # Previous counters per cpu line key (b"cpu", b"cpu0", ...).
        self._prev: dict[bytes, list[int]] = {}
        self._per_cpu_names: dict[bytes, tuple[str, ...]] = {}
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/stat once; nothing at all if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        names: list[str] = []
        values: list[float | None] = []
        knames: list[str] = []
        kvalues: list[float | None] = []
        pnames: list[str] = []
        pvalues: list[float | None] = []
        for line in raw.split(b"\n"):
            key, _, rest = line.partition(b" ")
            if key == b"cpu":
                ticks = _ticks(rest)
                if ticks is None:
                    continue
                names += _RATIO
                values += self._ratios(key, ticks)
                tick = self._tick
                names += _SECONDS
                values += [t * tick for t in ticks]
            elif key.startswith(b"cpu"):
                if self._per_cpu:
                    ticks = _ticks(rest)
                    if ticks is not None:
                        pnames += self._names_of(key)
                        pvalues += self._ratios(key, ticks)
            elif key in _KERNEL:
                # intr and softirq lines carry thousands of per-source numbers on
                # big nodes; only the leading total is wanted.
                knames.append(_KERNEL[key])
                head = rest.split(None, 1)
                try:
                    kvalues.append(float(head[0]))
                except (IndexError, ValueError):
                    kvalues.append(None)
        names += knames
        names += pnames
        values += kvalues
        values += pvalues
        return self._layout(names), values

    def _ratios(self, key: bytes, ticks: list[int]) -> list[float | None]:
        prev = self._prev.get(key)
        self._prev[key] = ticks
        if prev is None:
            return _NONE_PER_MODE
        # A counter can step backwards (iowait on some kernels, CPU hotplug):
        # clamp so a ratio never goes negative.
        deltas = [max(a - b, 0) for a, b in zip(ticks, prev)]
        total = sum(deltas)
        if total <= 0:
            return _NONE_PER_MODE
        return [d / total for d in deltas]

    def _names_of(self, key: bytes) -> tuple[str, ...]:
        names = self._per_cpu_names.get(key)
        if names is None:
            cpu = key[3:].decode()
            names = tuple(series("node_cpu_ratio", cpu=cpu, mode=m) for m in MODES)
            self._per_cpu_names[key] = names
        return names


def _ticks(rest: bytes) -> list[int] | None:
    fields = rest.split()
    if len(fields) < len(MODES):
        return None
    try:
        return [int(f) for f in fields[: len(MODES)]]
    except ValueError:
        return None
