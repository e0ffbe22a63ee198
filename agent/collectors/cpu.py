"""CPU time by mode and kernel activity counters, from one read of /proc/stat."""

from __future__ import annotations

import os
from itertools import repeat
from operator import mul, sub, truediv

from .base import ColumnCollector, Layout, ProcFile, Shape, series

#: The first eight columns of a ``cpu`` line. guest and guest_nice are left out:
#: the kernel already counts them inside user and nice, so adding them would
#: count that time twice.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

_RATIO = tuple(series("node_cpu_ratio", mode=m) for m in MODES)
_SECONDS = tuple(series("node_cpu_seconds_total", mode=m) for m in MODES)
#: the ratios of a first read, or of a second with no tick counted (appended, never changed)
_NONE_PER_MODE: tuple[None, ...] = (None,) * len(MODES)

#: what a plan's skeleton of the file leaves out
_DIGITS = b"0123456789"

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

    Without per-CPU series a read touches three spots of the file (``_StatPlan``),
    learnt from a read taken line by line.
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
        self._plan: _StatPlan | None = None

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/stat once; nothing at all if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        plan = self._plan
        if plan is not None:
            values = self._by_plan(raw, plan)
            if values is not None:
                return plan.names, values
        lines = raw.split(b"\n")
        values = []
        names = self._layout(self._by_lines(lines, values))
        self._plan = None if self._per_cpu else _StatPlan.learn(lines, names)
        return names, values

    def _by_plan(self, raw: bytes, plan: _StatPlan) -> list[float | None] | None:
        """The read from the first line, the intr line's first number and the lines
        after it; ``None`` when the file does not have the learnt layout."""
        ticks = _head_ticks(raw)
        if ticks is None:
            return None
        # Found from the end: the lines after intr are a few short ones, while the
        # per-cpu lines before it and the intr line itself run to tens of KiB on
        # big nodes (a forward search steps through those at ~1 byte a ns).
        after = raw.rfind(plan.after)
        if after < 0:
            return None
        start = raw.rfind(b"\n", 0, after) + 1
        if not raw.startswith(b"intr ", start):
            return None
        tail = raw[after:]
        # Tokens alone would not show a tab where a space was (which hides a key
        # from the line-by-line read): the tail's bytes but digits must be the
        # learnt ones.
        if tail.translate(None, _DIGITS) != plan.skeleton:
            return None
        counters = plan.tail.floats(tail.split())
        if counters is None:
            return None
        end = raw.find(b" ", start + 5, after)
        try:
            intr = float(raw[start + 5:end if end >= 0 else after])
        except ValueError:
            return None
        return [*self._ratios(b"cpu", ticks), *map(mul, ticks, repeat(self._tick)), intr, *counters]

    def _by_lines(self, lines: list[bytes], values: list[float | None]) -> list[str]:
        """The read line by line (any layout, per-cpu series); fills ``values``,
        returns the names."""
        names: list[str] = []
        knames: list[str] = []
        kvalues: list[float | None] = []
        pnames: list[str] = []
        pvalues: list[float | None] = []
        for line in lines:
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
        return names

    def _ratios(self, key: bytes, ticks: list[int]) -> list[float | None] | tuple[None, ...]:
        prev = self._prev.get(key)
        self._prev[key] = ticks
        if prev is None:
            return _NONE_PER_MODE
        deltas = list(map(sub, ticks, prev))
        if min(deltas) < 0:
            # A counter can step backwards (iowait on some kernels, CPU hotplug):
            # clamp so a ratio never goes negative.
            deltas = list(map(max, deltas, repeat(0)))
        total = sum(deltas)
        if total <= 0:
            return _NONE_PER_MODE
        return list(map(truediv, deltas, repeat(total)))

    def _names_of(self, key: bytes) -> tuple[str, ...]:
        names = self._per_cpu_names.get(key)
        if names is None:
            cpu = key[3:].decode()
            names = tuple(series("node_cpu_ratio", cpu=cpu, mode=m) for m in MODES)
            self._per_cpu_names[key] = names
        return names


class _StatPlan:
    """Where a read without per-CPU series finds its values, learnt from one read
    taken line by line: the ``cpu`` line first, the kernel counters in the intr
    line and in the lines after it (``tail``, a ``Shape`` of their tokens, found
    from the end of the file by their first line, ``after``, and the same bytes
    but digits as ``skeleton``). /proc/stat has had that layout since Linux 2.6; a
    file of another layout has no plan. The per-CPU lines between the first line
    and intr are not looked at: a kernel key or a second ``cpu`` line among them
    would go unseen, and the kernel's format has neither."""

    __slots__ = ("names", "after", "skeleton", "tail")

    def __init__(self, names: tuple[str, ...], after: bytes, skeleton: bytes, tail: Shape) -> None:
        self.names = names
        self.after = after
        self.skeleton = skeleton
        self.tail = tail

    @classmethod
    def learn(cls, lines: list[bytes], names: tuple[str, ...]) -> _StatPlan | None:
        """The plan of the file cut into ``lines`` whose read gave ``names``, or
        ``None`` when its layout is not the usual one."""
        keys = [line.partition(b" ")[0] for line in lines]
        if keys[0] != b"cpu" or keys.count(b"cpu") != 1 or names[:1] != _RATIO[:1]:
            return None
        if keys.count(b"intr") != 1:
            return None
        intr = keys.index(b"intr")
        kernel = [k for k in keys if k in _KERNEL]
        if len(kernel) != len(set(kernel)) or any(k in _KERNEL for k in keys[:intr]):
            return None
        if not lines[intr].startswith(b"intr "):
            return None
        return cls._with_tail(lines[intr + 1:], names)

    @classmethod
    def _with_tail(cls, lines: list[bytes], names: tuple[str, ...]) -> _StatPlan | None:
        positions: list[int] = []
        expect: list[bytes] = []
        values: list[int] = []
        n = 0
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            # A line whose first word ends other than at a space is a key to the
            # line-by-line read but not to a plan reading tokens: keep to the first.
            if parts[0] != line.partition(b" ")[0]:
                return None
            positions.append(n)
            expect.append(parts[0])
            if parts[0] in _KERNEL:
                if len(parts) < 2:
                    return None
                values.append(n + 1)
            n += len(parts)
        if not expect or not lines[0].startswith(expect[0] + b" "):
            return None
        skeleton = b"\n".join([b"", *lines]).translate(None, _DIGITS)
        return cls(names, b"\n" + expect[0] + b" ", skeleton, Shape(n, positions, expect, values))


def _head_ticks(raw: bytes) -> list[int] | None:
    """The first eight counters of a first line ``cpu  n n ...``, or ``None``."""
    end = raw.find(b"\n")
    if end < 0 or not raw.startswith(b"cpu "):
        return None
    fields = raw[4:end].split()
    if len(fields) < len(MODES):
        return None
    try:
        return list(map(int, fields[:8]))
    except ValueError:
        return None


def _ticks(rest: bytes) -> list[int] | None:
    fields = rest.split()
    if len(fields) < len(MODES):
        return None
    try:
        return [int(f) for f in fields[: len(MODES)]]
    except ValueError:
        return None
