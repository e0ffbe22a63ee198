"""CPU cost of one scheduler poll at the scale of a large site.

Generates a ``squeue --json`` of 20,000 jobs and a ``sinfo --json`` of 5,000
nodes in Slurm 22.05's real shape (every field of a job and node recorded from
the real Slurm in tests/data/scheduler/, ids, users, accounts, partitions,
states and node lists varied), then measures in CPU time (process_time, best of
``--repeat``):

* ``parse_ms``: both documents from bytes to a Snapshot (JSON decode included);
* ``figures_ms``: the Snapshot to the CAS figures (samples);
* ``store_ms``: what the agent does with them: absorb into its sampler (series
  dictionary) and encode the DATA frame with the real codec, tell the jobs that
  changed (``jobs_changed``, 1 % of them) as ``sched_jobs`` EVENTs encoded with
  the codec -- and what the root does: decode those frames and write their job
  rows into a real SQLite file (``Store.write``, the same transaction as the
  frames), so the figure is parse to stored;
* ``poll_ms``: the sum, to hold against the 1 s budget (``within_budget``);
* ``sync_store_ms``: the same for a poll that sends every job (the first after
  the agent starts, then one an hour: ``jobs_sync_every``), and ``sync_poll_ms``.

Prints one JSON line.

    python bench/scheduler_parse.py [--jobs N] [--nodes N] [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from clumon.agent.sampler import Sampler
from clumon.agent.scheduler import figures
from clumon.agent.scheduler.slurm import SlurmAdapter
from clumon.proto import codec
from clumon.agent.scheduler.jobs import JobTracker
from clumon.agent.scheduler.snapshot import Snapshot
from clumon.proto.frames import Data, Kind, make
from clumon.root.storage import EventRow, FrameRow, Store
from clumon.root.storage.history import HistoryConfig

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


#: jobs that changed between two polls of the steady case
CHANGED = 200


def changed_snapshot(snapshot: Snapshot) -> Snapshot:
    """The next poll: ``CHANGED`` pending jobs started, the rest as they were."""
    jobs = list(snapshot.jobs)
    done = 0
    for i, j in enumerate(jobs):
        if done == CHANGED:
            break
        if j.state == "pending":
            jobs[i] = dataclasses.replace(j, state="running", raw_state="RUNNING", start_time=time.time())
            done += 1
    return Snapshot(snapshot.nodes, tuple(jobs))


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

    agent_ms, frame = cpu_ms(store, args.repeat)
    changed = changed_snapshot(snapshot)
    with tempfile.TemporaryDirectory() as tmp:
        root = Store(f"sqlite:///{tmp}/root.db", history=HistoryConfig(flush_seconds=1e12, coarse_flush_seconds=1e12))
        seq = iter(range(1, 10**9))

        def jobs_poll(tracker: JobTracker, snap: Snapshot, now: float) -> int:
            raws = [codec.encode(make("login1", 1, now, e, next(seq))) for e in tracker.events(snap, now)]
            rows, frames = [], []
            for raw in raws:  # the root's side: decode, then one transaction
                f = codec.decode(raw)
                frames.append(FrameRow(f.sender, f.incarnation, f.seq, f.ts, int(Kind.EVENT), None, raw))
                b = f.body
                rows.append(EventRow(f.ts, b.subject, b.type, b.message, b.attrs, f.sender, f.incarnation, f.seq))
            root.write(frames, [], rows, [])
            return sum(len(r) for r in raws)

        def sync_poll() -> int:
            return jobs_poll(JobTracker("big", "login1"), snapshot, time.time())

        sync_ms, sync_bytes = cpu_ms(sync_poll, args.repeat)

        def steady_poll() -> int:
            tracker = JobTracker("big", "login1")
            tracker.events(snapshot, time.time())  # what was sent before (not measured)
            t0 = time.process_time()
            sent = jobs_poll(tracker, changed, time.time())
            steady_poll.cpu = time.process_time() - t0
            return sent

        best = float("inf")
        for _ in range(args.repeat):
            steady_bytes = steady_poll()
            best = min(best, steady_poll.cpu)
        jobs_ms = best * 1e3
        job_rows = root.jobs(limit=100_000, since=0)
        root.close()
    store_ms = agent_ms + jobs_ms
    poll_ms = parse_ms + figures_ms + store_ms
    sync_poll_ms = parse_ms + figures_ms + agent_ms + sync_ms
    print(json.dumps({
        "bench": "scheduler_parse", "host_cores": os.cpu_count(), "python": platform.python_version(),
        "jobs": len(snapshot.jobs), "nodes": len(snapshot.nodes),
        "squeue_bytes": len(jobs_doc), "sinfo_bytes": len(nodes_doc), "series": len(samples),
        "parse_ms": round(parse_ms, 1), "figures_ms": round(figures_ms, 1), "store_ms": round(store_ms, 1),
        "poll_ms": round(poll_ms, 1), "frame_bytes": len(frame), "within_budget": poll_ms <= 1000.0,
        "jobs_changed": CHANGED, "jobs_event_bytes": steady_bytes, "sync_store_ms": round(agent_ms + sync_ms, 1),
        "sync_poll_ms": round(sync_poll_ms, 1), "sync_event_bytes": sync_bytes, "job_rows": len(job_rows),
    }))


if __name__ == "__main__":
    sys.exit(main())
