"""CPU cost of one scheduler poll at the scale of a large site.

Generates a ``squeue --json`` of 20,000 jobs and a ``sinfo --json`` of 5,000
nodes in Slurm 22.05's real shape (every field of a job and node recorded from
the real Slurm in tests/data/scheduler/, ids, users, accounts, partitions,
states and node lists varied), then measures in CPU time (process_time, best of
``--repeat``):

* ``parse_ms``: both documents from bytes to a Snapshot (JSON decode included);
* ``figures_ms``: the Snapshot to the CAS figures (samples);
* ``store_ms``: what the agent does with them: absorb into its sampler (series
  dictionary) and encode the DATA frame with the real codec;
* ``poll_ms``: the sum, to hold against the 1 s budget (``within_budget``).

Prints one JSON line.

    python bench/scheduler_parse.py [--jobs N] [--nodes N] [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

from clumon.agent.sampler import Sampler
from clumon.agent.scheduler import figures
from clumon.agent.scheduler.slurm import SlurmAdapter
from clumon.proto import codec
from clumon.proto.frames import Data, make

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "scheduler"
PARTITIONS = ("batch", "short", "long", "gpu", "bigmem", "debug", "io", "preempt")


def generate(jobs: int, nodes: int) -> tuple[bytes, bytes]:
    """The two documents, from the recorded job and node as templates."""
    squeue = json.loads((DATA / "slurm_busy_squeue.json").read_bytes())
    sinfo = json.loads((DATA / "slurm_busy_sinfo.json").read_bytes())
    job_t, node_t = squeue["jobs"][0], sinfo["nodes"][0]
    width = len(str(nodes))
    node_list = []
    for i in range(nodes):
        n = copy.deepcopy(node_t)
        n["name"] = f"cn{i:0{width}d}"
        n["partitions"] = [PARTITIONS[i % len(PARTITIONS)]] + (["preempt"] if i % 3 == 0 else [])
        n["state"], n["state_flags"] = [("allocated", []), ("mixed", []), ("idle", []), ("down", ["NOT_RESPONDING"]),
                                        ("idle", ["DRAIN"]), ("allocated", []), ("idle", ["RESERVED"])][i % 7]
        n["alloc_cpus"] = n["cpus"] if n["state"] in ("allocated", "mixed") else 0
        node_list.append(n)
    job_list = []
    for i in range(jobs):
        j = copy.deepcopy(job_t)
        j["job_id"] = 100000 + i
        j["user_name"] = f"user{i % 400}"
        j["account"] = f"acct{i % 90}"
        j["partition"] = PARTITIONS[i % len(PARTITIONS)]
        running = i % 3 != 0
        j["job_state"] = "RUNNING" if running else "PENDING"
        first = (i * 4) % nodes
        j["nodes"] = f"cn[{first:0{width}d}-{min(first + 3, nodes - 1):0{width}d}]" if running else ""
        j["cpus"] = 4 * (1 + i % 16)
        job_list.append(j)
    squeue["jobs"], sinfo["nodes"] = job_list, node_list
    return json.dumps(squeue).encode(), json.dumps(sinfo).encode()


def cpu_ms(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t0)
    return best * 1e3, result


class _Pushed:
    name = "scheduler"
    default_interval = 30.0

    def collect(self):
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    jobs_doc, nodes_doc = generate(args.jobs, args.nodes)
    adapter = SlurmAdapter()
    parse_ms, snapshot = cpu_ms(lambda: adapter.parse({"jobs": jobs_doc, "nodes": nodes_doc}), args.repeat)
    figures_ms, samples = cpu_ms(lambda: figures.samples(snapshot, "big"), args.repeat)

    def store() -> bytes:
        sampler = Sampler([], 1.0)
        src = sampler.add_pushed(_Pushed(), 30.0)
        reading = sampler.absorb(src, samples)
        d = sampler.dictionary
        index, column = d.columns(reading.values)
        return codec.encode(make("login1", 1, time.time(), Data.from_values(d.version, column, index), 1))

    store_ms, frame = cpu_ms(store, args.repeat)
    poll_ms = parse_ms + figures_ms + store_ms
    print(json.dumps({
        "bench": "scheduler_parse", "host_cores": os.cpu_count(), "python": platform.python_version(),
        "jobs": len(snapshot.jobs), "nodes": len(snapshot.nodes),
        "squeue_bytes": len(jobs_doc), "sinfo_bytes": len(nodes_doc), "series": len(samples),
        "parse_ms": round(parse_ms, 1), "figures_ms": round(figures_ms, 1), "store_ms": round(store_ms, 1),
        "poll_ms": round(poll_ms, 1), "frame_bytes": len(frame), "within_budget": poll_ms <= 1000.0,
    }))


if __name__ == "__main__":
    sys.exit(main())
