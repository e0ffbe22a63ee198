"""Pressure stall information from /proc/pressure/* (Linux >= 4.20 with PSI on)."""

from __future__ import annotations

import time
from operator import mul
from typing import Callable

from .base import ColumnCollector, Layout, ProcFile, Shape

#: Seconds before a missing /proc/pressure file is tried again. A failed open
#: costs more than a successful read (the OSError), and PSI does not appear on
#: a running kernel except through a cgroup remount, so once in a while is enough.
RETRY_MISSING = 300.0

#: Resource -> the lines worth sending. System-wide "full" for cpu is defined as
#: always zero by the kernel, so it is left out; irq has only a "full" line.
RESOURCES = {
    "cpu": ("some",),
    "io": ("some", "full"),
    "memory": ("some", "full"),
    "irq": ("full",),
}
#: PSI line kind -> the word node_exporter uses, so dashboards carry over.
_WORD = {"some": "waiting", "full": "stalled"}
#: what a plan's skeleton of a file leaves out
_NUMBER = b"0123456789."


class PressureCollector(ColumnCollector):
    """Stall time per resource: ``node_pressure_<res>_<waiting|stalled>_seconds_total``
    (the kernel's cumulative ``total``) and ``node_pressure_<res>_<...>_ratio`` (the
    kernel's 10-second average, 0..1, so a bounded mask can act on it at the source).

    "waiting" is the "some" line (at least one task stalled), "stalled" the "full"
    line (all non-idle tasks stalled). Kernels without PSI yield no samples.
    """

    name = "pressure"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._missing_since: dict[str, float] = {}
        self._files = []
        self._layout = Layout()
        for res, kinds in RESOURCES.items():
            names = {
                kind.encode(): (
                    f"node_pressure_{res}_{_WORD[kind]}_seconds_total",
                    f"node_pressure_{res}_{_WORD[kind]}_ratio",
                )
                for kind in kinds
            }
            self._files.append((ProcFile(f"{procfs}/pressure/{res}"), names))
        self._plans: list[_PsiPlan | None] = [None] * len(self._files)

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read each /proc/pressure file that exists."""
        names: list[str] = []
        values: list[float | None] = []
        now = self._clock()
        missing = self._missing_since
        for at, (file, kinds) in enumerate(self._files):
            path = file.path
            since = missing.get(path) if missing else None
            if since is not None and now - since < RETRY_MISSING:
                continue
            raw = file.read()
            if raw is None:
                missing[path] = now
                continue
            if missing:
                missing.pop(path, None)
            self._from_file(at, raw, kinds, names, values)
        return self._layout(names), values

    def _from_file(
        self, at: int, raw: bytes, kinds: dict[bytes, tuple[str, str]], names: list[str], values: list[float | None]
    ) -> None:
        plan = self._plans[at]
        got = plan.values(raw) if plan is not None else None
        if got is not None:
            names += plan.names
            values += got
            return
        start = len(values)
        _parse(raw, kinds, names, values)
        # A value that is not a number now may be one at the next read: learn again then.
        self._plans[at] = None if None in values[start:] else _PsiPlan.learn(raw, kinds, names[start:])


class _PsiPlan:
    """A /proc/pressure file as learnt from one read: its bytes but the numbers
    (``skeleton``: the words, ``=`` signs, spaces and line ends, in order) and,
    with each ``=`` read as a space, where the wanted values sit among its tokens
    (``shape``, whose keys are all the words)."""

    __slots__ = ("names", "skeleton", "shape", "scales")

    def __init__(self, names: tuple[str, ...], skeleton: bytes, shape: Shape, scales: list[float]) -> None:
        self.names = names
        self.skeleton = skeleton
        self.shape = shape
        self.scales = scales

    def values(self, raw: bytes) -> list[float] | None:
        """The wanted values of a read, scaled; ``None`` when its layout is not
        the learnt one or a value is not a number."""
        # With the same skeleton, the same token count and the same words where
        # they were, a number can only have grown, shrunk or changed: see learn.
        if raw.translate(None, _NUMBER) != self.skeleton or raw[-1:] != b"\n":
            return None
        got = self.shape.floats(raw.replace(b"=", b" ").split())
        return None if got is None else list(map(mul, got, self.scales))

    @classmethod
    def learn(cls, raw: bytes, kinds: dict[bytes, tuple[str, str]], names: list[str]) -> _PsiPlan | None:
        """The plan of ``raw`` whose read gave ``names``, or ``None`` unless it is
        laid out as the kernel writes it: lines of words split by single spaces,
        each but the first ``key=value``, and a line end last. Then a number that
        vanishes from a later read leaves its place empty (two spaces in a row)
        where no other can appear, so the token count or a word shows it."""
        lines = raw.split(b"\n")
        if lines[-1] or not all(lines[:-1]):
            return None
        keys: list[int] = []
        expect: list[bytes] = []
        positions: list[int] = []
        scales: list[float] = []
        n = 0
        for line in lines[:-1]:
            fields = _kernel_words(line)
            if fields is None:
                return None
            keys.append(n)
            expect.append(fields[0])
            at = {}
            for i, field in enumerate(fields[1:]):
                key = field.partition(b"=")[0]
                keys.append(n + 1 + 2 * i)
                expect.append(key)
                at[key] = n + 2 + 2 * i
            if fields[0] in kinds:
                positions += [at[b"total"], at[b"avg10"]]
                scales += [1e-6, 0.01]
            n += 2 * len(fields) - 1
        return cls(tuple(names), raw.translate(None, _NUMBER), Shape(n, keys, expect, positions), scales)


def _kernel_words(line: bytes) -> list[bytes] | None:
    """The words of a line laid out as the kernel writes it (``kind key=value ...``,
    single spaces), or ``None``."""
    fields = line.split(b" ")
    if fields != line.split():
        return None
    if any(f.count(b"=") != 1 or f[:1] == b"=" or f[-1:] == b"=" for f in fields[1:]):
        return None
    return fields


def _parse(raw: bytes, kinds: dict[bytes, tuple[str, str]], names: list[str], values: list[float | None]) -> None:
    for line in raw.split(b"\n"):
        fields = line.split()
        pair = kinds.get(fields[0]) if fields else None
        if pair is None:
            continue
        # "some avg10=0.23 avg60=0.24 avg300=0.56 total=7856314" (total in µs)
        got = dict(f.partition(b"=")[::2] for f in fields[1:])
        names += pair
        values.append(_number(got.get(b"total"), 1e-6))
        values.append(_number(got.get(b"avg10"), 0.01))


def _number(text: bytes | None, scale: float) -> float | None:
    if text is None:
        return None
    try:
        return float(text) * scale
    except ValueError:
        return None
