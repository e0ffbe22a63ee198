"""Pressure stall information from /proc/pressure/* (Linux >= 4.20 with PSI on)."""

from __future__ import annotations

import time
from typing import Callable

from .base import ColumnCollector, Layout, ProcFile

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

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read each /proc/pressure file that exists."""
        names: list[str] = []
        values: list[float | None] = []
        now = self._clock()
        for file, kinds in self._files:
            path = file.path
            since = self._missing_since.get(path)
            if since is not None and now - since < RETRY_MISSING:
                continue
            raw = file.read()
            if raw is None:
                self._missing_since[path] = now
            else:
                self._missing_since.pop(path, None)
                _parse(raw, kinds, names, values)
        return self._layout(names), values


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
