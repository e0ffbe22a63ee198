"""Hardware temperatures, where psutil sees sensors (hwmon/thermal in sysfs)."""

from __future__ import annotations

from typing import Callable

from .base import Sample, series


def _psutil_sensors() -> dict:
    import psutil  # imported on first use: the agent pays for psutil only if it runs

    read = getattr(psutil, "sensors_temperatures", None)
    return read() if read is not None else {}


class TemperatureCollector:
    """``node_temperature_celsius{chip="coretemp",sensor="Package id 0"}`` for each
    sensor psutil reports; none on machines without sensors (most VMs).

    A sensor without a label is named by its position in the chip's list, and a
    repeated label gets ``#2``, ``#3``..., so every series name is unique and the
    same on every read.
    """

    name = "temperature"
    default_interval = 10.0

    def __init__(self, sensors: Callable[[], dict] = _psutil_sensors) -> None:
        self._sensors = sensors

    def collect(self) -> list[Sample]:
        """Read every sensor; an error reading sensors yields no samples."""
        try:
            chips = self._sensors() or {}
        except Exception:  # psutil raises assorted OSErrors on odd sysfs trees
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
