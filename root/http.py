"""``/metrics``' text (served by ``root/web/server.py``): the latest value of every series of every live node, for Prometheus.

The loop only takes a snapshot (node list and copies of the value arrays); the
text is rendered in an executor, so a scrape of a 5,000-node site never stalls
ingest. Series keep their Clumon+ names; ``node`` and ``aggregator`` labels are
added. Nodes that are forgotten, or not heard from for ``stale_after`` seconds,
drop out.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from clumon.proto.tree import LatestCache
from clumon.root.registry import Registry

log = logging.getLogger("clumon.root.http")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    name: str
    aggregator: str
    up: bool
    names: tuple[str, ...]
    values: np.ndarray | None


def snapshot(registry: Registry, cache: LatestCache, stale_after: float) -> list[NodeSnapshot]:
    """What a scrape needs, copied on the loop (cheap: one array copy per node)."""
    now = time.time()
    out = []
    for n in registry.nodes.values():
        if now - n.last_seen > stale_after:
            continue
        nv = cache.nodes.get(n.name)
        live = n.state in ("up", "suspect", "restarted")
        out.append(NodeSnapshot(n.name, n.parent, n.state == "up" or n.state == "restarted",
                                nv.names if (nv is not None and live) else (),
                                nv.values.copy() if (nv is not None and live) else None))
    return out


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _split(series: str) -> tuple[str, str]:
    """'name{a="b"}' -> ('name', 'a="b"')."""
    brace = series.find("{")
    if brace < 0:
        return series, ""
    return series[:brace], series[brace + 1:-1]


def _fmt(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    return repr(float(v))


def render(nodes: list[NodeSnapshot], health: dict, alerts: list[str] = ()) -> str:
    """The Prometheus text exposition (format 0.0.4); ``alerts`` are ready
    ``ALERTS{...} 1`` lines (the alert engine's)."""
    families: dict[str, list[str]] = {}
    for node in nodes:
        base = f'node="{_escape(node.name)}",aggregator="{_escape(node.aggregator)}"'
        families.setdefault("clumon_node_up", []).append(f"clumon_node_up{{{base}}} {1 if node.up else 0}")
        if node.values is None:
            continue
        for series, v in zip(node.names, node.values.tolist()):
            if math.isnan(v):
                continue
            name, labels = _split(series)
            families.setdefault(name, []).append(
                f"{name}{{{base}{',' + labels if labels else ''}}} {_fmt(v)}")
    lines = []
    for name in sorted(families):
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(families[name])
    for key, v in sorted(health.items()):
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, (int, float)):
            continue
        lines.append(f"# TYPE clumon_root_{key} gauge")
        lines.append(f"clumon_root_{key} {_fmt(v)}")
    if alerts:
        lines.append("# TYPE ALERTS gauge")
        lines.extend(alerts)
    return "\n".join(lines) + "\n"
