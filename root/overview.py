"""The cluster at a glance, from the registry and the latest-value cache.

Feeds ``clumon top``: nodes by state, the hottest nodes by CPU, memory and load,
and a per-aggregator summary. Pure: no I/O, cheap enough to run every second.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict

from clumon.proto.tree import LatestCache
from clumon.root.registry import Registry

CPU_IDLE = 'node_cpu_ratio{mode="idle"}'
CPU_IOWAIT = 'node_cpu_ratio{mode="iowait"}'
MEMORY = "node_memory_used_ratio"
LOAD = "node_load1"


def _value(names_pos: dict[str, int], values, name: str) -> float | None:
    i = names_pos.get(name)
    if i is None:
        return None
    v = float(values[i])
    return None if math.isnan(v) else v


def node_figures(cache: LatestCache, node: str) -> dict[str, float | None]:
    """cpu (busy ratio), memory (used ratio) and load1 of one node, if known."""
    nv = cache.nodes.get(node)
    if nv is None:
        return {"cpu": None, "memory": None, "load1": None}
    pos = _positions(nv.names)
    idle = _value(pos, nv.values, CPU_IDLE)
    iowait = _value(pos, nv.values, CPU_IOWAIT) or 0.0
    return {
        "cpu": None if idle is None else max(0.0, 1.0 - idle - iowait),
        "memory": _value(pos, nv.values, MEMORY),
        "load1": _value(pos, nv.values, LOAD),
    }


@functools.lru_cache(maxsize=256)
def _positions(names: tuple[str, ...]) -> dict[str, int]:
    """name -> index, shared by every node with the same dictionary."""
    return {n: i for i, n in enumerate(names) if n in (CPU_IDLE, CPU_IOWAIT, MEMORY, LOAD)}


def overview(registry: Registry, cache: LatestCache, top: int = 10) -> dict:
    """States, hottest nodes and per-aggregator summaries."""
    states: dict[str, int] = defaultdict(int)
    rows = []
    per_agg: dict[str, dict] = defaultdict(lambda: {"nodes": 0, "up": 0, "cpu": [], "memory": [], "load1": []})
    for n in registry.nodes.values():
        if n.role != "agent":
            continue
        states[n.state] += 1
        figs = node_figures(cache, n.name) if n.state in ("up", "suspect", "restarted") else {}
        rows.append({"node": n.name, "aggregator": n.parent, "state": n.state, **figs})
        agg = per_agg[n.parent or "(root)"]
        agg["nodes"] += 1
        agg["up"] += n.state == "up"
        for k in ("cpu", "memory", "load1"):
            if figs.get(k) is not None:
                agg[k].append(figs[k])

    def hottest(key: str) -> list[dict]:
        have = [r for r in rows if r.get(key) is not None]
        return sorted(have, key=lambda r: r[key], reverse=True)[:top]

    aggregators = []
    for name, a in sorted(per_agg.items()):
        state = registry.nodes[name].state if name in registry.nodes else "up"
        aggregators.append({
            "aggregator": name, "state": state, "nodes": a["nodes"], "up": a["up"],
            **{f"avg_{k}": (sum(a[k]) / len(a[k]) if a[k] else None) for k in ("cpu", "memory", "load1")},
            **{f"max_{k}": (max(a[k]) if a[k] else None) for k in ("cpu", "memory", "load1")},
        })
    return {"states": dict(states), "nodes": len(rows), "hottest_cpu": hottest("cpu"),
            "hottest_memory": hottest("memory"), "hottest_load1": hottest("load1"),
            "aggregators": aggregators}
