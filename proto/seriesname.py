"""Series names read back into their metric and labels: ``m{a="x",b="y"}`` ->
``("m", {"a": "x", "b": "y"})``, the inverse of how the agent writes them
(``clumon.agent.collectors.base.series``: Prometheus text-format escaping)."""

from __future__ import annotations

import re

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(name: str) -> tuple[str, dict[str, str]] | None:
    """The metric and labels of a series name, or None when it is not one."""
    open_at = name.find("{")
    if open_at < 0:
        return (name, {}) if name else None
    if not name.endswith("}") or open_at == 0:
        return None
    body, labels, pos = name[open_at + 1:-1], {}, 0
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if m is None:
            return None
        labels[m.group(1)] = re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
    return name[:open_at], labels
