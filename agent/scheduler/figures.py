"""The CAS platform's figures from a snapshot, per cluster and per partition.

For each partition, and for the whole cluster under ``partition=""`` (each node
and job counted once there, however many partitions list it):

* ``sched_nodes{state}``: total, offline (down, not responding, powered off),
  admin_down (drained or draining), busy (running jobs), reserved, idle;
* ``sched_cores{state}``: total (of all nodes), used (by running jobs),
  requested (by pending jobs);
* ``sched_jobs{state}``: total (not finished), running, pending;
* ``sched_accounts{state}``: total (with a job not finished), running, pending;
* ``sched_utilization_ratio`` = cores of running jobs / cores of powered-on nodes;
* ``sched_occupancy_ratio`` = powered-on nodes running jobs / powered-on nodes;
* ``sched_power_on_ratio`` = powered-on nodes / all nodes,

where a powered-on node is one that is not offline. A ratio whose denominator
is zero is missing (None), not zero.
"""

from __future__ import annotations

from clumon.agent.collectors.base import Sample, series
from clumon.agent.scheduler.snapshot import (
    FINISHED, NODE_STATES, OFFLINE, PENDING, RUNNING, SUSPENDED, Snapshot)

#: the partition label of the cluster-wide figures
CLUSTER_WIDE = ""


class _Tally:
    """The running counts of one partition (or of the whole cluster)."""

    __slots__ = ("nodes", "cores", "cores_on", "nodes_on", "nodes_running", "jobs",
                 "cores_used", "cores_requested", "accounts", "accounts_running", "accounts_pending")

    def __init__(self) -> None:
        self.nodes = dict.fromkeys(NODE_STATES, 0)
        self.cores = self.cores_on = self.nodes_on = self.nodes_running = 0
        self.jobs = {RUNNING: 0, PENDING: 0, SUSPENDED: 0}
        self.cores_used = self.cores_requested = 0
        self.accounts: set[str] = set()
        self.accounts_running: set[str] = set()
        self.accounts_pending: set[str] = set()


def tally(snapshot: Snapshot) -> dict[str, _Tally]:
    """Counts per partition, and cluster-wide under ``CLUSTER_WIDE``."""
    tallies: dict[str, _Tally] = {CLUSTER_WIDE: _Tally()}

    def of(partition: str) -> _Tally:
        t = tallies.get(partition)
        if t is None:
            t = tallies[partition] = _Tally()
        return t

    for node in snapshot.nodes:
        powered_on = node.state != OFFLINE
        for t in (tallies[CLUSTER_WIDE], *map(of, set(node.partitions) - {CLUSTER_WIDE})):
            t.nodes[node.state] += 1
            t.cores += node.cpus
            if powered_on:
                t.nodes_on += 1
                t.cores_on += node.cpus
                t.nodes_running += node.running
    for job in snapshot.jobs:
        state = job.state
        if state == FINISHED:
            continue
        for t in (tallies[CLUSTER_WIDE], *map(of, set(job.partitions) - {CLUSTER_WIDE})):
            t.jobs[state] += 1
            t.accounts.add(job.account)
            if state == RUNNING:
                t.cores_used += job.cores
                t.accounts_running.add(job.account)
            elif state == PENDING:
                t.cores_requested += job.cores
                t.accounts_pending.add(job.account)
    return tallies


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def samples(snapshot: Snapshot, cluster: str) -> list[Sample]:
    """The figures of one poll as samples (see the module docstring)."""
    out: list[Sample] = []
    for partition, t in sorted(tally(snapshot).items()):
        labels = {"cluster": cluster, "partition": partition}

        def add(metric: str, state: str, value: float) -> None:
            out.append(Sample(series(metric, **labels, state=state), float(value)))

        add("sched_nodes", "total", sum(t.nodes.values()))
        for state in NODE_STATES:
            add("sched_nodes", state, t.nodes[state])
        add("sched_cores", "total", t.cores)
        add("sched_cores", "used", t.cores_used)
        add("sched_cores", "requested", t.cores_requested)
        add("sched_jobs", "total", sum(t.jobs.values()))
        add("sched_jobs", "running", t.jobs[RUNNING])
        add("sched_jobs", "pending", t.jobs[PENDING])
        add("sched_accounts", "total", len(t.accounts))
        add("sched_accounts", "running", len(t.accounts_running))
        add("sched_accounts", "pending", len(t.accounts_pending))
        total_nodes = sum(t.nodes.values())
        out.append(Sample(series("sched_utilization_ratio", **labels), _ratio(t.cores_used, t.cores_on)))
        out.append(Sample(series("sched_occupancy_ratio", **labels), _ratio(t.nodes_running, t.nodes_on)))
        out.append(Sample(series("sched_power_on_ratio", **labels), _ratio(t.nodes_on, total_nodes)))
    return out
