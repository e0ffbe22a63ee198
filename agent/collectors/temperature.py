"""Hardware temperatures from sysfs (hwmon, else thermal zones), as psutil finds them."""

from __future__ import annotations

import glob
import os
import time
from typing import Callable, NamedTuple

from .base import Sample, read_bytes, series

#: Seconds between looks for sensor files. Sensors appear with their driver, at
#: boot or when a module loads; between looks only the ``*_input`` files are read.
RESCAN = 600.0


class Reading(NamedTuple):
    """One sensor's temperature, shaped like psutil's ``shwtemp`` where it matters."""

    label: str
    current: float


class SysfsSensors:
    """``{chip: [Reading, ...]}`` read from sysfs the way ``psutil.sensors_temperatures``
    does (``/sys/class/hwmon/hwmon*/[device/]temp*_input`` named by the chip's
    ``name`` and the sensor's ``_label``; thermal zones only when hwmon has none),
    without importing psutil (~0.8 MiB of RSS) or globbing sysfs at every read.
    """

    def __init__(self, sysfs: str = "/sys", clock: Callable[[], float] = time.monotonic) -> None:
        self._sysfs = sysfs
        self._clock = clock
        self._found_at: float | None = None
        #: (chip, label, path of the file holding millidegrees)
        self._sensors: list[tuple[str, str, str]] = []

    def __call__(self) -> dict[str, list[Reading]]:
        now = self._clock()
        if self._found_at is None or now - self._found_at >= RESCAN:
            self._sensors = self._find()
            self._found_at = now
        out: dict[str, list[Reading]] = {}
        for chip, label, path in self._sensors:
            raw = read_bytes(path)
            try:
                current = int(raw) / 1000.0 if raw else None
            except ValueError:
                current = None
            if current is not None:
                out.setdefault(chip, []).append(Reading(label, current))
        return out

    def _find(self) -> list[tuple[str, str, str]]:
        hwmon = f"{self._sysfs}/class/hwmon/hwmon*"
        bases = sorted({p.rsplit("_", 1)[0] for pattern in (f"{hwmon}/temp*_input", f"{hwmon}/device/temp*_input")
                        for p in glob.glob(pattern)})
        found = []
        for base in bases:
            chip = _text(os.path.join(os.path.dirname(base), "name"))
            if chip is None:
                continue
            found.append((chip, _text(base + "_label") or "", base + "_input"))
        if not bases:
            for zone in sorted(glob.glob(f"{self._sysfs}/class/thermal/thermal_zone*")):
                chip = _text(os.path.join(zone, "type"))
                if chip is not None:
                    found.append((chip, "", os.path.join(zone, "temp")))
        return found


def _text(path: str) -> str | None:
    raw = read_bytes(path)
    return None if raw is None else raw.decode(errors="replace").strip()


class TemperatureCollector:
    """``node_temperature_celsius{chip="coretemp",sensor="Package id 0"}`` for each
    sensor sysfs shows; none on machines without sensors (most VMs).

    A sensor without a label is named by its position in the chip's list, and a
    repeated label gets ``#2``, ``#3``..., so every series name is unique and the
    same on every read.
    """

    name = "temperature"
    default_interval = 10.0

    def __init__(self, sensors: Callable[[], dict] | None = None) -> None:
        self._sensors = sensors or SysfsSensors()

    def collect(self) -> list[Sample]:
        """Read every sensor; an error reading sensors yields no samples."""
        try:
            chips = self._sensors() or {}
        except Exception:  # odd sysfs trees raise assorted OSErrors
            return []
        out = []
        for chip, entries in chips.items():
            seen: dict[str, int] = {}
            for i, entry in enumerate(entries):
                label = getattr(entry, "label", "") or str(i)
                seen[label] = seen.get(label, 0) + 1
                if seen[label] > 1:
                    label = f"{label}#{seen[label]}"
                value = getattr(entry, "current", None)
                out.append(
                    Sample(
                        series("node_temperature_celsius", chip=chip, sensor=label),
                        None if value is None else float(value),
                    )
                )
        return out
