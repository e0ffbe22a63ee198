"""The CAS figures of a snapshot, checked against numbers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from clumon.agent.scheduler import figures, lsf
from clumon.agent.scheduler.snapshot import (
    ADMIN_DOWN, BUSY, FINISHED, IDLE, OFFLINE, PENDING, RESERVED, RUNNING, SUSPENDED, Job, Node, Snapshot)

DATA = Path(__file__).resolve().parents[1] / "data" / "scheduler"


def job(jid, state, cores, partition="batch", account="a", nodes=()):
    return Job(jid, "u-" + account, account, tuple(partition.split(",")), state, state.upper(), nodes, cores)


#: two partitions sharing n2; every node state once
SNAPSHOT = Snapshot(
    nodes=(
        Node("n1", ("batch",), BUSY, 8, True),
        Node("n2", ("batch", "gpu"), BUSY, 16, True),
        Node("n3", ("batch",), ADMIN_DOWN, 8, True),   # draining, still running a job
        Node("n4", ("batch",), OFFLINE, 8, False),
        Node("n5", ("gpu",), RESERVED, 16, False),
        Node("n6", ("gpu",), IDLE, 16, False),
    ),
    jobs=(
        job("1", RUNNING, 8, nodes=("n1",), account="chem"),
        job("2", RUNNING, 4, nodes=("n3",), account="phys"),
        job("3", RUNNING, 12, partition="gpu", nodes=("n2",), account="chem"),
        job("4", PENDING, 32, account="bio"),
        job("5", PENDING, 2, partition="batch,gpu", account="chem"),  # waits in both
        job("6", SUSPENDED, 4, account="geo"),
        job("7", FINISHED, 64, account="old"),
    ),
)


def values(snapshot=SNAPSHOT, cluster="c1"):
    return {s.name: s.value for s in figures.samples(snapshot, cluster)}


def fig(v, metric, partition, state=None):
    labels = f'cluster="c1",partition="{partition}"' + (f',state="{state}"' if state else "")
    return v[f"{metric}{{{labels}}}"]


def test_cluster_wide_figures():
    v = values()
    nodes = {s: fig(v, "sched_nodes", "", s) for s in ("total", "offline", "admin_down", "busy", "reserved", "idle")}
    assert nodes == {"total": 6, "offline": 1, "admin_down": 1, "busy": 2, "reserved": 1, "idle": 1}
    assert fig(v, "sched_cores", "", "total") == 72           # 8+16+8+8+16+16
    assert fig(v, "sched_cores", "", "used") == 24            # jobs 1, 2, 3
    assert fig(v, "sched_cores", "", "requested") == 34       # jobs 4, 5 (counted once)
    assert fig(v, "sched_jobs", "", "total") == 6             # all but the finished one
    assert fig(v, "sched_jobs", "", "running") == 3
    assert fig(v, "sched_jobs", "", "pending") == 2
    assert fig(v, "sched_accounts", "", "total") == 4         # chem phys bio geo
    assert fig(v, "sched_accounts", "", "running") == 2       # chem phys
    assert fig(v, "sched_accounts", "", "pending") == 2       # bio chem
    # powered on: all but n4, 64 cores; running jobs on n1 n2 n3
    assert fig(v, "sched_utilization_ratio", "") == pytest.approx(24 / 64)
    assert fig(v, "sched_occupancy_ratio", "") == pytest.approx(3 / 5)
    assert fig(v, "sched_power_on_ratio", "") == pytest.approx(5 / 6)


def test_partition_figures():
    v = values()
    # batch: n1 n2 n3 n4 (40 cores, 32 powered on); jobs 1 2 4 5 6
    assert fig(v, "sched_nodes", "batch", "total") == 4 and fig(v, "sched_nodes", "batch", "offline") == 1
    assert fig(v, "sched_cores", "batch", "total") == 40
    assert fig(v, "sched_cores", "batch", "used") == 12 and fig(v, "sched_cores", "batch", "requested") == 34
    assert fig(v, "sched_jobs", "batch", "total") == 5
    assert fig(v, "sched_accounts", "batch", "total") == 4
    assert fig(v, "sched_utilization_ratio", "batch") == pytest.approx(12 / 32)
    assert fig(v, "sched_occupancy_ratio", "batch") == pytest.approx(3 / 3)
    assert fig(v, "sched_power_on_ratio", "batch") == pytest.approx(3 / 4)
    # gpu: n2 n5 n6 (48 cores, all on); jobs 3 5
    assert fig(v, "sched_nodes", "gpu", "busy") == 1 and fig(v, "sched_nodes", "gpu", "idle") == 1
    assert fig(v, "sched_cores", "gpu", "used") == 12 and fig(v, "sched_cores", "gpu", "requested") == 2
    assert fig(v, "sched_jobs", "gpu", "running") == 1 and fig(v, "sched_jobs", "gpu", "pending") == 1
    assert fig(v, "sched_utilization_ratio", "gpu") == pytest.approx(12 / 48)
    assert fig(v, "sched_occupancy_ratio", "gpu") == pytest.approx(1 / 3)
    assert fig(v, "sched_power_on_ratio", "gpu") == 1.0


def test_node_states_add_up_to_the_total_in_every_partition():
    v = values()
    for partition in ("", "batch", "gpu"):
        parts = sum(fig(v, "sched_nodes", partition, s) for s in ("offline", "admin_down", "busy", "reserved", "idle"))
        assert parts == fig(v, "sched_nodes", partition, "total")


def test_ratios_without_a_denominator_are_missing():
    v = values(Snapshot(nodes=(Node("n1", ("p",), OFFLINE, 4, False),), jobs=(job("1", PENDING, 4, partition="q"),)))
    assert fig(v, "sched_utilization_ratio", "p") is None and fig(v, "sched_occupancy_ratio", "p") is None
    assert fig(v, "sched_power_on_ratio", "p") == 0.0
    assert fig(v, "sched_power_on_ratio", "q") is None  # a queue with no known nodes
    assert values(Snapshot((), ())) and all(s.value in (0.0, None) for s in figures.samples(Snapshot((), ()), "c1"))


def test_labels_name_cluster_partition_and_state():
    names = set(values())
    assert 'sched_nodes{cluster="c1",partition="gpu",state="reserved"}' in names
    assert 'sched_occupancy_ratio{cluster="c1",partition=""}' in names
    assert len(names) == 3 * 18


def test_lsf_recording_figures_by_hand():
    snap = lsf.LsfAdapter().parse({"jobs": (DATA / "lsf_bjobs.json").read_bytes(),
                                   "nodes": (DATA / "lsf_bhosts_w.txt").read_bytes()})
    v = {s.name: s.value for s in figures.samples(snap, "c1")}
    assert [fig(v, "sched_nodes", "", s) for s in ("total", "offline", "admin_down", "busy", "reserved", "idle")] \
        == [8, 2, 1, 3, 1, 1]
    assert [fig(v, "sched_cores", "", s) for s in ("total", "used", "requested")] == [160, 60, 76]
    assert [fig(v, "sched_jobs", "", s) for s in ("total", "running", "pending")] == [7, 3, 3]
    assert [fig(v, "sched_accounts", "", s) for s in ("total", "running", "pending")] == [5, 3, 3]
    assert fig(v, "sched_utilization_ratio", "") == pytest.approx(60 / 112)
    assert fig(v, "sched_occupancy_ratio", "") == pytest.approx(4 / 6)
    assert fig(v, "sched_power_on_ratio", "") == pytest.approx(6 / 8)
    assert [fig(v, "sched_jobs", "normal", s) for s in ("total", "running", "pending")] == [4, 2, 1]
