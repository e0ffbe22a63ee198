"""What executable plugins print, parsed (pure): Prometheus text format and Nagios
plugin output. Either parser raises ``GarbageOutput`` naming the first bad line.

Prometheus text (node_exporter's textfile collector format)::

    # HELP job_queue_length Jobs waiting
    # TYPE job_queue_length gauge
    job_queue_length{queue="batch"} 42

Series keep their names and labels. Nagios (``STATUS - text | perfdata``, the exit
code 0..3 meaning OK, WARNING, CRITICAL, UNKNOWN)::

    DISK OK - free space: / 3326 MB | /=2643MB;5948;5958;0;5968 time=0.01s

becomes ``nagios_status{plugin="NAME"}`` (the exit code) and one series per perfdata
item, its unit turned into a base unit and the name's suffix:
``nagios_perfdata_bytes{plugin="NAME",label="/"}``, ``..._seconds``, ``..._ratio``
(percent / 100), ``..._total`` (``c``), plain ``nagios_perfdata`` without a unit.
"""

from __future__ import annotations

import math
import re

from clumon.agent.collectors.base import Sample, series

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*"(?:[^"\\\n]|\\.)*"'
_PROM_LINE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>\s*(?:{_LABEL}\s*(?:,\s*{_LABEL}\s*)*,?)?\s*)\}})?"
    rf"\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$"
)
_LABEL_ITEM = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"')
#: "OK - text", "DISK WARNING - text", "HTTP OK: text": the status within the first words
_NAGIOS_STATUS = re.compile(r"^(?:[A-Za-z0-9_.\-/]+\s+){0,2}(OK|WARNING|CRITICAL|UNKNOWN)(?:\s|:|$)")
_PERF_ITEM = re.compile(r"""('(?:[^']|'')+'|[^=\s]+)=(-?[0-9.]+(?:[eE][-+]?\d+)?)([a-zA-Z%]*)\S*""")

#: unit -> (name suffix, factor to the base unit)
_UNITS = {
    "": ("", 1.0), "s": ("_seconds", 1.0), "ms": ("_seconds", 1e-3), "us": ("_seconds", 1e-6),
    "%": ("_ratio", 0.01), "B": ("_bytes", 1.0), "KB": ("_bytes", 1e3), "MB": ("_bytes", 1e6),
    "GB": ("_bytes", 1e9), "TB": ("_bytes", 1e12), "c": ("_total", 1.0),
}

MAX_SERIES = 10000


class GarbageOutput(ValueError):
    """A plugin printed something that is neither format, or too much of it."""


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        raise GarbageOutput(f"not a number: {text!r}") from None
    return v if math.isfinite(v) else None


def parse_prometheus(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition; ``GarbageOutput`` on the first bad line."""
    out: dict[str, float | None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line)
        if m is None:
            raise GarbageOutput(f"line {n} is not Prometheus text: {line[:120]!r}")
        labels = {k: _unescape(v) for k, v in _LABEL_ITEM.findall(m.group("labels") or "")}
        try:
            value = _number(m.group("value"))
        except GarbageOutput as exc:
            raise GarbageOutput(f"line {n}: {exc}") from None
        out[series(m.group("name"), **labels)] = value
        if len(out) > MAX_SERIES:
            raise GarbageOutput(f"more than {MAX_SERIES} series")
    return [Sample(k, v) for k, v in out.items()]


def _unescape(v: str) -> str:
    return v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def looks_like_nagios(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    return bool(_NAGIOS_STATUS.match(first))


def parse_nagios(text: str, exit_code: int, plugin: str) -> list[Sample]:
    """Samples of Nagios plugin output: the status and the perfdata after ``|``."""
    if exit_code not in (0, 1, 2, 3):
        raise GarbageOutput(f"exit code {exit_code} is not a Nagios status (0..3)")
    lines = text.strip().splitlines()
    if not lines or not looks_like_nagios(text):
        raise GarbageOutput(f"first line is not 'STATUS - text': {lines[0][:120] if lines else ''!r}")
    perf = []
    if "|" in lines[0]:
        perf.append(lines[0].split("|", 1)[1])
    for line in lines[1:]:  # long output; perfdata may continue after a '|'
        if "|" in line:
            perf.append(line.split("|", 1)[1])
    out = {series("nagios_status", plugin=plugin): float(exit_code)}
    for chunk in perf:
        rest = chunk.strip()
        while rest:
            m = _PERF_ITEM.match(rest)
            if m is None:
                raise GarbageOutput(f"bad perfdata: {rest[:120]!r}")
            label = m.group(1).strip("'").replace("''", "'")
            unit = m.group(3)
            if unit not in _UNITS:
                raise GarbageOutput(f"unknown perfdata unit {unit!r} in {m.group(0)!r}")
            suffix, factor = _UNITS[unit]
            value = _number(m.group(2))
            out[series("nagios_perfdata" + suffix, plugin=plugin, label=label)] = None if value is None else value * factor
            rest = rest[m.end():].lstrip()
    return [Sample(k, v) for k, v in out.items()]
