"""CPU cost of alert evaluation at the root: 2,000 nodes x 30 rules every 10 s.

Builds the root's live view as ingest leaves it (a ``Registry`` and a
``LatestCache`` fed with real HELLO and DATA frames: 150 series a node), a real
SQLite store holding 10 minutes of 1-minute rollups of ``node_load1`` for every
node (the ``window`` rules read them), and the alert engine with 30 rules of
every kind: thresholds over series globs (with hysteresis), rates of counters,
per-core load, node states, absences, events and windowed aggregates. Between
two evaluations every node sends new values (not measured); about 1 % of the
instances meet their condition, so alerts are born, fire and resolve.

Each evaluation is timed (wall, ``eval_ms_*``) and the process's CPU time over
all of them (``process_time``, executor threads included) gives
``cpu_pct_root``: the share of one core that evaluating every ``--every``
seconds would take.

    python bench/alert_eval.py [--nodes 2000] [--rounds 30] [--every 10]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from clumon.proto import codec
from clumon.proto.frames import Data, Hello, Kind, make
from clumon.proto.runtime import percentile
from clumon.proto.tree import LatestCache
from clumon.root.alerts.engine import AlertEngine
from clumon.root.registry import Registry
from clumon.root.storage import DictionaryRow, EventRow, FrameRow, NodeRow, Store
from clumon.root.storage.history import HistoryConfig

MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MOUNTS = tuple(f"/m{i}" for i in range(10))
NAMED = (tuple(f'node_cpu_ratio{{mode="{m}"}}' for m in MODES)
         + tuple(f'node_disk_used_ratio{{mount="{m}"}}' for m in MOUNTS)
         + ("node_load1", "node_load5", "node_load15", "node_memory_used_ratio", "node_swap_used_ratio",
            "node_forks_total", "node_context_switches_total", "node_network_receive_bytes_total"))
SERIES = NAMED + tuple(f"node_filler_{i}" for i in range(150 - len(NAMED)))

RULES = []
for i, m in enumerate(MOUNTS):  # 10 thresholds over a glob, with hysteresis
    RULES.append(f'[[rule]]\nname = "Disk{i}"\nseries = \'node_disk_used_ratio{{mount="{m}"}}\'\nabove = 0.95\n'
                 f'recover_below = 0.9\nfor = "30s"\n')
RULES += [
    '[[rule]]\nname = "DiskAny"\nseries = \'node_disk_used_ratio{mount=*}\'\nabove = 0.97\n',
    '[[rule]]\nname = "CpuUser"\nseries = \'node_cpu_ratio{mode="user"}\'\nabove = 0.98\nfor = "1m"\n',
    '[[rule]]\nname = "IoWait"\nseries = \'node_cpu_ratio{mode="iowait"}\'\nabove = 0.5\n',
    '[[rule]]\nname = "Mem"\nseries = "node_memory_used_ratio"\nabove = 0.98\n',
    '[[rule]]\nname = "Swap"\nseries = "node_swap_used_ratio"\nabove = 0.9\n',
    '[[rule]]\nname = "LoadPerCore"\nseries = "node_load1"\nper_core = true\nabove = 2\n',
    '[[rule]]\nname = "Load5"\nseries = "node_load5"\nabove = 60\n',
    '[[rule]]\nname = "Forks"\nseries = "node_forks_total"\nrate = true\nabove = 500\n',
    '[[rule]]\nname = "Ctx"\nseries = "node_context_switches_total"\nrate = true\nabove = 1e6\n',
    '[[rule]]\nname = "Net"\nseries = "node_network_receive_bytes_total"\nrate = true\nabove = 1e9\n',
    '[[rule]]\nname = "Down"\nstate = ["down", "unreachable"]\nfor = "1m"\n',
    '[[rule]]\nname = "AggDown"\nrole = "aggregator"\nstate = ["down", "unreachable"]\n',
    '[[rule]]\nname = "Restarted"\nstate = ["restarted"]\n',
    '[[rule]]\nname = "Suspect"\nstate = ["suspect"]\nfor = "2m"\n',
    '[[rule]]\nname = "SilentLoad"\nabsent = "node_load1"\nwindow = "2m"\n',
    '[[rule]]\nname = "SilentMem"\nabsent = "node_memory_used_ratio"\nwindow = "2m"\n',
    '[[rule]]\nname = "Spool"\nrole = "any"\nevent = "spool_overflow"\n',
    '[[rule]]\nname = "Plugin"\nevent = "plugin_*"\nmatch = { plugin = "*" }\n',
    '[[rule]]\nname = "LoadAvg10m"\nseries = "node_load1"\nwindow = "10m"\nabove = 50\n',
    '[[rule]]\nname = "LoadMax10m"\nseries = "node_load1"\nwindow = "10m"\nagg = "max"\nabove = 90\n',
]
assert len(RULES) == 30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between evaluations at the root")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(Path(tmp), a.nodes, a.rounds, a.every))


def build_store(tmp: Path, nodes: list[str], now: float) -> Store:
    """Ten minutes of node_load1 for every node, in the 1-minute rollups."""
    store = Store(f"sqlite:///{tmp / 'root.db'}", history=HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12))
    names = ("node_load1",)
    dicts, frames = [], []
    for n in nodes:
        dicts.append(DictionaryRow(n, 1, 1, names, {}, "agent"))
        frames.append(FrameRow(n, 1, 0, now - 660, int(Kind.HELLO), 1, codec.encode(make(n, 1, now - 660, Hello(1, names), 0))))
        for m in range(10):
            ts = now - 600 + m * 60
            frames.append(FrameRow(n, 1, m + 1, ts, int(Kind.DATA), 1,
                                   codec.encode(make(n, 1, ts, Data.from_values(1, [random.random() * 8]), m + 1))))
    store.write(frames, dicts, [], [NodeRow(n, "agg", "agg", "agent", "up", now, 1, now, {}) for n in nodes])
    store.flush()
    return store


def feed(cache: LatestCache, nodes: list[str], now: float, seq: int, rnd: random.Random) -> None:
    """One DATA frame from every node, ~1 % of the values past their thresholds."""
    for i, n in enumerate(nodes):
        hot = rnd.random() < 0.01
        values = ([0.99 if hot and k == 0 else rnd.random() * 0.3 for k in range(8)]
                  + [0.99 if hot else rnd.random() * 0.8 for _ in MOUNTS]
                  + [rnd.random() * (12 if hot else 4), 2.0, 2.0, 0.5, 0.1, seq * 100.0 * (1 + hot),
                     seq * 1e4, seq * 1e6]
                  + [rnd.random() for _ in range(len(SERIES) - len(NAMED))])
        cache.data(make(n, 1, now, Data.from_values(1, values), seq))


async def run(tmp: Path, n_nodes: int, rounds: int, every: float) -> int:
    rnd = random.Random(7)
    now = time.time()
    aggs = [f"agg-{i}" for i in range(max(1, n_nodes // 40))]
    nodes = [f"node-{i}" for i in range(n_nodes)]
    store = build_store(tmp, nodes, now)
    registry, cache = Registry(), LatestCache()
    for g in aggs:
        registry.hello(g, "", 1, now, "aggregator", {})
        registry.nodes[g].role = "aggregator"
    for i, n in enumerate(nodes):
        registry.hello(n, aggs[i % len(aggs)], 1, now, "agent", {"cores": 16})
        cache.hello(make(n, 1, now, Hello(1, SERIES), 0))
    rules = tmp / "alerts.toml"
    rules.write_text("\n".join(RULES))
    clock = [now]
    engine = AlertEngine(rules, registry, cache, store, lambda *a: None, clock=lambda: clock[0])
    engine.book.load([])
    walls, cpu = [], 0.0
    for r in range(rounds):
        clock[0] = now + r * every
        feed(cache, nodes, clock[0], r + 1, rnd)
        if r % 7 == 3:  # a few events and state changes come and go
            engine.saw_events([EventRow(clock[0], nodes[r], "plugin_failed", "x", {"plugin": "p"}, nodes[r], 1, r)])
            registry.nodes[nodes[r]].state = "down"
        t0, c0 = time.perf_counter(), time.process_time()
        await engine.evaluate_once()
        cpu += time.process_time() - c0
        walls.append((time.perf_counter() - t0) * 1000)
    counts = engine.book.counts()
    store.close()
    print(json.dumps({
        "bench": "alert_eval", "host_cores": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "nodes": n_nodes, "rules": len(RULES), "series_per_node": len(SERIES),
        "rounds": rounds, "every_s": every,
        "eval_ms_p50": round(percentile(walls, 50), 1), "eval_ms_p99": round(percentile(walls, 99), 1),
        "cpu_ms_per_eval": round(cpu / rounds * 1000, 1),
        "cpu_pct_root": round(cpu / rounds / every * 100, 2),
        "alerts_firing_at_end": counts["firing"], "alerts_pending_at_end": counts["pending"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
