"""Cost of collecting with the agent's default collectors on this machine.

Prints one JSON line: values collected, wall-time p50/p99 of a full collect (every
default collector once), p50 wall and CPU ms per collector, and the share of a
core the collectors cost when each runs at its own default interval (from CPU
time, which includes the kernel's work producing /proc files).

Bounded: ``--rounds`` (default 100, at most 10,000) with ``--pause`` seconds
between rounds, so caches are as cold as between real collects.
``--extra-procs N`` starts N idle processes first (issue 3's 500-process case)
and stops them at the end.

    python bench/collect_cost.py [--rounds N] [--pause S] [--per-cpu] [--extra-procs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

from clumon.agent.collectors import default_collectors
from clumon.proto.runtime import percentile


def measure(collectors: list, rounds: int, pause: float) -> dict:
    """Time every collector once per round; return the JSON fields."""
    for c in collectors:  # prime: first reads set up rates and mount lists
        c.collect()
    wall: dict[str, list[float]] = {c.name: [] for c in collectors}
    cpu: dict[str, list[float]] = {c.name: [] for c in collectors}
    totals: list[float] = []
    counts: dict[str, int] = {}
    for _ in range(rounds):
        time.sleep(pause)
        total = 0.0
        for c in collectors:
            w0, c0 = time.perf_counter(), time.thread_time()
            samples = c.collect()
            dc, dw = (time.thread_time() - c0) * 1000.0, (time.perf_counter() - w0) * 1000.0
            wall[c.name].append(dw)
            cpu[c.name].append(dc)
            counts[c.name] = len(samples)
            total += dw
        totals.append(total)
    cpu_p50 = {name: statistics.median(ms) for name, ms in cpu.items()}
    # CPU ms per second of wall time, each source at its own interval;
    # 10 ms per second is 1 % of a core.
    ms_per_s = sum(cpu_p50[c.name] / c.default_interval for c in collectors)
    return {
        "values_collected": sum(counts.values()),
        "values_per_1s_tick": sum(counts[c.name] for c in collectors if c.default_interval <= 1.0),
        "collect_p50_ms": round(statistics.median(totals), 4),
        "collect_p99_ms": round(percentile(totals, 99), 4),
        "cpu_pct_at_default_intervals": round(ms_per_s / 10.0, 4),
        **{f"{name}_p50_ms": round(statistics.median(ms), 4) for name, ms in wall.items()},
        **{f"{name}_cpu_p50_ms": round(ms, 4) for name, ms in cpu_p50.items()},
        **{f"{name}_values": n for name, n in counts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.1)
    parser.add_argument("--per-cpu", action="store_true")
    parser.add_argument("--extra-procs", type=int, default=0)
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 10_000))
    extra = [subprocess.Popen(["sleep", "3600"]) for _ in range(max(0, min(args.extra_procs, 5000)))]
    try:
        fields = measure(default_collectors(per_cpu=args.per_cpu), rounds, args.pause)
        present = sum(1 for e in os.listdir("/proc") if e.isdigit())
    finally:
        for proc in extra:
            proc.kill()
        for proc in extra:
            proc.wait()
    print(json.dumps({
        "bench": "collect_cost",
        "host_cores": os.cpu_count(),
        "python": platform.python_version(),
        "rounds": rounds,
        "per_cpu": args.per_cpu,
        "processes_present": present,
        **fields,
    }))


if __name__ == "__main__":
    main()
