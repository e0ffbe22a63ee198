"""The scheduler adapters on recorded outputs: Slurm 22.05 (``--json`` and ``-o``
formats) and the ``slurm-wlm-torque`` wrapper recorded from the same real
cluster at the same moment, and LSF outputs written from its documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clumon.agent.scheduler import figures, lsf, pbs, slurm
from clumon.agent.scheduler.snapshot import (
    ADMIN_DOWN, BUSY, FINISHED, IDLE, OFFLINE, PENDING, RESERVED, RUNNING, SUSPENDED, ParseError, expand_hostlist)

DATA = Path(__file__).resolve().parents[1] / "data" / "scheduler"
SCENES = ("busy", "degraded")


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def slurm_json(scene: str):
    return slurm.SlurmAdapter().parse({"jobs": read(f"slurm_{scene}_squeue.json"), "nodes": read(f"slurm_{scene}_sinfo.json")})


def slurm_text(scene: str):
    return slurm.SlurmAdapter(use_json=False).parse(
        {"jobs": read(f"slurm_{scene}_squeue.txt"), "nodes": read(f"slurm_{scene}_sinfo.txt")})


def pbs_wrapper(scene: str):
    return pbs.PbsAdapter().parse({"jobs": read(f"pbs_{scene}_qstat_f.txt"), "nodes": read(f"pbs_{scene}_pbsnodes.txt")})


def test_hostlists_expand():
    assert expand_hostlist("n[1-3,7],gpu01") == ("n1", "n2", "n3", "n7", "gpu01")
    assert expand_hostlist("a[08-10]b") == ("a08b", "a09b", "a10b")
    assert expand_hostlist("") == ()
    assert expand_hostlist("r[1-2]n[08-09],x") == ("r1n08", "r1n09", "r2n08", "r2n09", "x")
    assert expand_hostlist("a[1,3-4]b") == ("a1b", "a3b", "a4b")


def test_slurm_json_busy_scene():
    """3 nodes x 4 CPUs, six 2-CPU jobs running, two pending (one in partition
    small with account acctb), n3 draining while it still runs two jobs."""
    snap = slurm_json("busy")
    nodes = {n.name: n for n in snap.nodes}
    assert nodes["n1"].partitions == ("debug", "small") and nodes["n1"].state == BUSY and nodes["n1"].cpus == 4
    assert nodes["n3"].state == ADMIN_DOWN and nodes["n3"].running
    jobs = {j.id: j for j in snap.jobs}
    assert len(jobs) == 8
    assert jobs["1"].state == RUNNING and jobs["1"].nodes == ("n1",) and jobs["1"].cores == 2
    assert jobs["1"].user == "root" and jobs["1"].account == "root"  # no account: the user
    assert jobs["1"].start_time and jobs["1"].submit_time and jobs["1"].end_time is None
    assert jobs["8"].state == PENDING and jobs["8"].account == "acctb" and jobs["8"].partitions == ("small",)
    assert jobs["8"].cores == 4 and jobs["8"].nodes == () and jobs["8"].start_time is None


def test_slurm_json_degraded_scene():
    """n2's slurmd killed (down, not responding), n3 idle in a reservation, three jobs cancelled."""
    snap = slurm_json("degraded")
    states = {n.name: n.state for n in snap.nodes}
    assert states == {"n1": BUSY, "n2": OFFLINE, "n3": RESERVED}
    by_state = {}
    for j in snap.jobs:
        by_state.setdefault(j.state, set()).add(j.id)
    assert by_state == {RUNNING: {"1", "7"}, PENDING: {"3", "4", "8", "9"}, FINISHED: {"2", "5", "6"}}
    cancelled = next(j for j in snap.jobs if j.id == "5")
    assert cancelled.raw_state == "CANCELLED" and cancelled.end_time is not None


@pytest.mark.parametrize("scene", SCENES)
def test_slurm_text_formats_and_torque_wrapper_agree_with_json(scene):
    want = {s.name: s.value for s in figures.samples(slurm_json(scene), "c")}
    text = {s.name: s.value for s in figures.samples(slurm_text(scene), "c")}
    assert text == want
    # the wrapper does not say which partitions a node serves: the cluster-wide
    # figures and the per-partition job figures match
    wrapped = {s.name: s.value for s in figures.samples(pbs_wrapper(scene), "c")}
    for name, value in want.items():
        if 'partition=""' in name or name.startswith(("sched_jobs", "sched_accounts")) \
                or 'state="used"' in name or 'state="requested"' in name:
            assert wrapped[name] == value, name


def test_slurm_23_shape_with_wrapped_numbers_and_state_lists():
    jobs = json.dumps({"jobs": [{"job_id": 5, "user_name": "u", "account": "a", "partition": "p",
                                 "job_state": ["RUNNING"], "nodes": "x[1-2]", "cpus": {"set": True, "number": 8},
                                 "submit_time": {"set": True, "number": 100}, "start_time": {"set": True, "number": 200},
                                 "end_time": {"set": True, "number": 900}}]}).encode()
    nodes = json.dumps({"nodes": [{"name": "x1", "state": ["IDLE", "DRAIN"], "cpus": 8, "alloc_cpus": 0,
                                   "partitions": ["p"]}]}).encode()
    snap = slurm.SlurmAdapter().parse({"jobs": jobs, "nodes": nodes})
    assert snap.jobs[0].cores == 8 and snap.jobs[0].nodes == ("x1", "x2") and snap.jobs[0].start_time == 200
    assert snap.nodes[0].state == ADMIN_DOWN and not snap.nodes[0].running


def _grouped(doc: dict) -> dict:
    """Slurm 23.02+'s sinfo without -N: a partition's nodes in one state as one entry."""
    groups: dict = {}
    for e in doc["sinfo"]:
        key = (e["partition"]["name"], tuple(e["node"]["state"]))
        g = groups.get(key)
        if g is None:
            groups[key] = json.loads(json.dumps(e))
            continue
        g["nodes"]["nodes"] += e["nodes"]["nodes"]
        for k in ("allocated", "idle", "total"):
            g["cpus"][k] += e["cpus"][k]
    for g in groups.values():  # and its names compressed, as Slurm prints them
        names = g["nodes"]["nodes"]
        if len(names) > 1 and all(n[:1] == "n" and n[1:].isdigit() for n in names):
            g["nodes"]["nodes"] = ["n[" + ",".join(n[1:] for n in names) + "]"]
    return {"sinfo": list(groups.values())}


@pytest.mark.parametrize("scene", SCENES)
def test_slurm_23_sinfo_document_gives_the_same_figures(scene):
    """sinfo's 23.02+ document (entries per partition and state; written from its
    documented shape, tests/data/scheduler/README.md), per node and grouped."""
    want = {s.name: s.value for s in figures.samples(slurm_json(scene), "c")}
    per_node = read(f"slurm_v2302_{scene}_sinfo.json")
    grouped = json.dumps(_grouped(json.loads(per_node))).encode()
    for doc in (per_node, grouped):
        snap = slurm.SlurmAdapter().parse({"jobs": read(f"slurm_{scene}_squeue.json"), "nodes": doc})
        assert {s.name: s.value for s in figures.samples(snap, "c")} == want
    assert slurm.JSON_COMMANDS["nodes"] == ["sinfo", "-N", "--json"]


@pytest.mark.parametrize("words, running, want", [
    ({"IDLE"}, False, IDLE), ({"ALLOCATED"}, True, BUSY), ({"MIXED", "DRAIN"}, True, ADMIN_DOWN),
    ({"IDLE", "DRAIN", "NOT_RESPONDING"}, False, OFFLINE), ({"IDLE", "POWERED_DOWN"}, False, OFFLINE),
    ({"IDLE", "RESERVED"}, False, RESERVED), ({"ALLOCATED", "RESERVED"}, True, BUSY), ({"DOWN"}, False, OFFLINE),
])
def test_slurm_node_states(words, running, want):
    assert slurm.node_state(words, running) == want


@pytest.mark.parametrize("raw, fails", [
    (b"", True), (b"not json", True), (b'{"jobs": 3}', True), (b'{"jobs": [{"no_id": 1}]}', True), (b"[]", True),
])
def test_slurm_garbage_is_a_parse_error(raw, fails):
    with pytest.raises(ParseError):
        slurm.parse_squeue_json(raw)


def test_slurm_text_garbage_is_a_parse_error():
    with pytest.raises(ParseError):
        slurm.parse_sinfo_text(b"n1|debug|idle\n")
    with pytest.raises(ParseError):
        slurm.parse_squeue_text(b"1|root|x|debug|RUNNING|n1|two|a|b|c\n")


def test_slurm_switches_to_text_formats_when_json_is_unknown():
    adapter = slurm.SlurmAdapter()
    assert not adapter.fallback("squeue: error: Invalid user")
    assert adapter.commands["jobs"][1] == "--json"
    assert adapter.fallback("squeue: unrecognized option '--json'")
    assert adapter.commands["jobs"][:2] == ["squeue", "-h"]
    assert not adapter.fallback("squeue: unrecognized option '--json'")


def test_pbs_wrapper_fields():
    snap = pbs_wrapper("busy")
    jobs = {j.id: j for j in snap.jobs}
    assert jobs["1"].state == RUNNING and jobs["1"].nodes == ("n1",) and jobs["1"].cores == 2
    assert jobs["1"].user == "root" and jobs["8"].account == "acctb" and jobs["8"].state == PENDING
    nodes = {n.name: n for n in snap.nodes}
    # the wrapper says only "draining" for n3; its running jobs say it is in use
    assert nodes["n3"].state == ADMIN_DOWN and nodes["n3"].running and nodes["n3"].cpus == 4


def test_pbs_torque_and_pbspro_shapes():
    qstat = b"""Job Id: 17.head
    Job_Name = big
    Job_Owner = ann@login1
    job_state = R
    queue = batch
    exec_host = c1/0+c1/1+c2/0+c2/1
    Resource_List.nodes = 2:ppn=2
    start_time = 1700000000
    Variable_List = PBS_O_HOME=/home/ann,PBS_O_LANG=C,
\tPBS_O_PATH=/usr/bin

Job Id: 18.head
    Job_Owner = bo@login1
    job_state = H
    queue = batch
    Resource_List.ncpus = 8
    Account_Name = proj
"""
    jobs = pbs.parse_qstat(qstat)
    assert jobs[0].cores == 4 and jobs[0].nodes == ("c1", "c2") and jobs[0].start_time == 1700000000
    assert jobs[1].state == PENDING and jobs[1].cores == 8 and jobs[1].account == "proj"
    nodes = pbs.parse_pbsnodes(b"""c1
     state = job-busy
     resources_available.ncpus = 16
     queue = batch

c2
     state = down,offline
     np = 8

c3
     state = offline
     np = 8
     jobs = 5.head/0
""")
    assert [(n.state, n.cpus, n.partitions) for n in nodes] == [
        (BUSY, 16, ("batch",)), (OFFLINE, 8, ()), (ADMIN_DOWN, 8, ())]
    assert nodes[2].running


@pytest.mark.parametrize("raw", [b"garbage first\n", b"n1\n    np = 4\n", b"Job Id: 1\n    queue = q\n"])
def test_pbs_garbage_is_a_parse_error(raw):
    with pytest.raises(ParseError):
        pbs.PbsAdapter().parse({"jobs": raw, "nodes": raw})


def test_lsf_recordings():
    snap = lsf.LsfAdapter().parse({"jobs": read("lsf_bjobs.json"), "nodes": read("lsf_bhosts_w.txt")})
    states = {n.name: n.state for n in snap.nodes}
    assert states == {"hosta01": BUSY, "hosta02": BUSY, "hosta03": ADMIN_DOWN, "hosta04": OFFLINE,
                      "hosta05": RESERVED, "hosta06": IDLE, "hostb01": BUSY, "hostb02": OFFLINE}
    jobs = {j.id: j for j in snap.jobs}
    assert jobs["2101"].nodes == ("hosta01", "hosta03") and jobs["2101"].cores == 12 and jobs["2101"].account == "chem"
    assert jobs["2106"].state == SUSPENDED and jobs["2107"].state == PENDING and jobs["2090"].state == FINISHED
    assert jobs["2090"].end_time - jobs["2090"].start_time == 89 * 60


def test_lsf_garbage_is_a_parse_error():
    with pytest.raises(ParseError):
        lsf.parse_bhosts(b"HOST_NAME STATUS\nx ok\n")
    with pytest.raises(ParseError):
        lsf.parse_bjobs(b"No unfinished job found")
