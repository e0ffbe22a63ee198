"""The scheduler source against a real Slurm (slurmctld and three slurmd on
loopback, from the recipe in ../shared/slurm/): the figures an agent sends to a
real root equal what sinfo and squeue say while jobs run, wait, a node drains and
a slurmd dies; the PBS-style wrapper over the same cluster gives the same
figures; a squeue that hangs, prints garbage or vanishes leaves the agent
healthy, with a sched_error EVENT and its last figures marked stale."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from harness import free_port, wait_for

from clumon.agent.scheduler.snapshot import expand_hostlist
from clumon.cli.client import Client

REPO = Path(__file__).resolve().parents[2]
NODES, CPUS = 3, 4
STATES = ("total", "offline", "admin_down", "busy", "reserved", "idle")


def recipe() -> Path | None:
    """``shared/slurm/`` beside the repository (or beside a folder above it: a worktree)."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "slurm"
        if (candidate / "start.sh").is_file():
            return candidate
    return None


class Slurm:
    def __init__(self, directory: Path):
        self.dir = directory
        self.env = dict(os.environ, SLURM_CONF=str(directory / "slurm.conf"))

    def run(self, *argv: str) -> str:
        # in the cluster's directory: sbatch writes each job's slurm-N.out where it runs
        return subprocess.run(argv, env=self.env, cwd=self.dir, capture_output=True, text=True, check=True,
                              timeout=30).stdout

    def figures(self) -> dict[str, float]:
        """The cluster-wide figures as sinfo and squeue print them."""
        nodes: dict[str, tuple[str, int, int]] = {}
        for line in self.run("sinfo", "-h", "-N", "-o", "%N|%T|%c|%C").split():
            name, state, cpus, counts = line.split("|")
            nodes[name] = (state, int(cpus), int(counts.split("/")[0]))
        got = dict.fromkeys(STATES, 0)
        on = cores_on = running_on = 0
        for state, cpus, allocated in nodes.values():
            base = state.rstrip("*~#%!$@^+-")
            if state.endswith(("*", "~")) or base in ("down", "unknown"):
                kind = "offline"
            elif base in ("drained", "draining", "drain", "drng"):
                kind = "admin_down"
            elif allocated:
                kind = "busy"
            elif base in ("reserved", "resv"):
                kind = "reserved"
            else:
                kind = "idle"
            got[kind] += 1
            if kind != "offline":
                on, cores_on, running_on = on + 1, cores_on + cpus, running_on + (allocated > 0)
        got["total"] = len(nodes)
        out = {f"nodes_{k}": v for k, v in got.items()}
        jobs = [line.split("|") for line in self.run("squeue", "-h", "-o", "%T|%C|%u").split()]
        running = [int(c) for s, c, _ in jobs if s == "RUNNING"]
        pending = [int(c) for s, c, _ in jobs if s == "PENDING"]
        out.update(cores_total=sum(c for _, c, _ in nodes.values()), cores_used=sum(running),
                   cores_requested=sum(pending), jobs_running=len(running), jobs_pending=len(pending),
                   jobs_total=len(jobs),
                   utilization=sum(running) / cores_on, occupancy=running_on / on, power_on=on / len(nodes))
        return out


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    where = recipe()
    if where is None:
        pytest.skip("no shared/slurm/start.sh beside the repository")
    if os.geteuid() != 0:
        pytest.skip("the Slurm recipe runs slurmctld and slurmd as root")
    directory = tmp_path_factory.mktemp("slurm")
    try:
        started = subprocess.run([str(where / "start.sh"), str(directory), str(NODES), str(CPUS)],
                                 capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        started = None
    cluster = Slurm(directory)
    if started is not None and started.returncode != 0 and (directory / "slurm.conf").is_file():
        # the recipe waits 10 s for the nodes; on a loaded machine they may take longer
        try:
            wait_for(lambda: cluster.figures()["nodes_idle"] == NODES, timeout=60, interval=0.5,
                     what="the nodes idle")
            started = subprocess.CompletedProcess(started.args, 0, started.stdout, started.stderr)
        except AssertionError:
            pass
    if started is None or started.returncode != 0:
        tail = (started.stdout + started.stderr)[-600:] if started else "timed out"
        for log in sorted((directory / "log").glob("*.log")):
            tail += f" | {log.name}: " + " / ".join(log.read_text(errors="replace").splitlines()[-3:])
        subprocess.run([str(where / "stop.sh"), str(directory)], capture_output=True)
        pytest.skip(f"the Slurm recipe did not start: {tail}")
    yield cluster
    subprocess.run(["scancel", "-u", "root"], env=cluster.env, capture_output=True)
    subprocess.run([str(where / "stop.sh"), str(directory)], capture_output=True, timeout=60)
    kill_jobs_left(directory)


def kill_jobs_left(directory: Path) -> None:
    """This cluster's job processes still alive: a slurmd killed by the test leaves its
    jobs' slurmstepd (and their scripts, under ``directory``) behind, and a step whose
    script ended stays waiting in the cluster's directory."""
    parents: dict[int, int] = {}
    scripts: list[int] = []
    stranded: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if str(directory).encode() in cmdline:
            scripts.append(pid)
        elif cmdline.startswith(b"slurmstepd"):
            # a step whose script is gone but whose slurmd was killed: it waits for ever,
            # in this cluster's directory
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                    stranded.append(pid)
            except OSError:
                pass
    steps = set()
    for pid in scripts:
        try:
            if Path(f"/proc/{parents[pid]}/cmdline").read_bytes().startswith(b"slurmstepd"):
                steps.add(parents[pid])
        except OSError:
            pass
    doomed = set(scripts) | steps | set(stranded)
    while True:  # and everything below them
        more = {pid for pid, ppid in parents.items() if ppid in doomed} - doomed
        if not more:
            break
        doomed |= more
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def torque_wrapper() -> None:
    """qstat and pbsnodes over Slurm (Debian's slurm-wlm-torque), installed if missing."""
    if shutil.which("qstat") and shutil.which("pbsnodes"):
        return
    done = subprocess.run("apt-get install -y -qq --no-install-recommends slurm-wlm-torque || "
                          "(apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm-torque)",
                          shell=True, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if done.returncode != 0 or not shutil.which("qstat"):
        pytest.skip(f"cannot install slurm-wlm-torque: {(done.stdout + done.stderr)[-300:]}")


def scheduler(kind: str, **more) -> dict:
    return {"scheduler": {"kind": kind, "cluster": "c1", "interval": 1, "timeout": 5, **more}}


def cluster_figures(c: Client, node: str) -> dict[str, float | None]:
    values = c.call("latest", node=node, series=["sched_*"])["values"]

    def v(metric: str, state: str | None = None):
        labels = 'cluster="c1",partition=""' + (f',state="{state}"' if state else "")
        got = values.get(f"{metric}{{{labels}}}")
        return None if got is None else got[0]

    out = {f"nodes_{s}": v("sched_nodes", s) for s in STATES}
    out.update({f"cores_{s}": v("sched_cores", s) for s in ("total", "used", "requested")})
    out.update({f"jobs_{s}": v("sched_jobs", s) for s in ("total", "running", "pending")})
    out.update(utilization=v("sched_utilization_ratio"), occupancy=v("sched_occupancy_ratio"),
               power_on=v("sched_power_on_ratio"))
    return out


def same(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(
        got[k] is not None and abs(got[k] - want[k]) < 1e-4 for k in want)


def test_a_failing_squeue_leaves_the_agent_healthy_with_stale_figures(slurm, tree, tmp_path):
    fake, mode = tmp_path / "fake-bin", tmp_path / "mode"
    fake.mkdir()
    squeue = fake / "squeue"
    real = shutil.which("squeue")
    mode.write_text("ok")
    squeue.write_text(f"""#!/bin/sh
case "$(cat {mode})" in
ok) exec {real} "$@";;
hang) exec sleep 300;;
garbage) echo '{{"jobs": [{{"job_id": '; exit 0;;
esac
""")
    squeue.chmod(0o755)
    (fake / "sinfo").symlink_to(shutil.which("sinfo"))
    tree.env.update(slurm.env)
    root = tree.root()
    # the commands from bin_dir, so a squeue taken away is missing (not found further on PATH)
    tree.agent("login1", [root.port], **scheduler("slurm", timeout=1, bin_dir=str(fake)))
    running = 'sched_jobs{cluster="c1",partition="",state="total"}'
    stale = 'sched_stale{cluster="c1"}'
    with Client(root.query) as c:
        def latest() -> dict:
            return {k: v[0] for k, v in c.call("latest", node="login1")["values"].items()}

        wait_for(lambda: latest().get(stale) == 0 and running in latest(), what="first figures")
        good = latest()[running]

        def errors() -> list[dict]:
            return [e for e in c.call("events", node="login1") if e["type"] == "sched_error"]

        for step, reason in (("hang", "timeout"), ("garbage", "garbage"), ("missing", "missing"), ("ok", None)):
            if step == "missing":
                squeue.unlink()
            else:
                if step == "ok":
                    squeue.write_text(f"#!/bin/sh\nexec {real} \"$@\"\n")
                    squeue.chmod(0o755)
                mode.write_text(step)
            if reason is None:
                wait_for(lambda: latest().get(stale) == 0, what="figures fresh again")
                break
            wait_for(lambda: any(e["attrs"]["reason"] == reason for e in errors()), timeout=30,
                     what=f"a sched_error for {step}")
            values = wait_for(lambda: latest().get(stale) == 1 and latest(), what=f"stale figures ({step})")
            assert values[running] == good  # the last good figures are kept
        by_reason = [e["attrs"]["reason"] for e in errors()]
        assert sorted(by_reason) == ["garbage", "missing", "timeout"]  # once each, not once a poll
        assert latest()['clumon_sched_errors_total{cluster="c1"}'] >= 3
        nodes = {n["name"]: n for n in c.call("nodes")}
        assert nodes["login1"]["state"] == "up"
        assert "node_load1" in latest()  # the agent's own sources went on


def test_figures_follow_jobs_drain_and_a_dead_slurmd(slurm, tree):
    torque_wrapper()
    tree.env.update(slurm.env)
    http = free_port()
    root = tree.root(http=f"127.0.0.1:{http}")
    tree.agent("login-slurm", [root.port], **scheduler("slurm"))
    tree.agent("login-pbs", [root.port], **scheduler("pbs"))
    for _ in range(5):
        slurm.run("sbatch", "-n", "2", "--wrap", "sleep 120")
    wait_for(lambda: slurm.figures()["jobs_running"] == 5, what="five jobs running")
    for _ in range(2):
        slurm.run("sbatch", "-n", "4", "--wrap", "sleep 120")
    slurm.run("scontrol", "update", "nodename=n3", "state=drain", "reason=test")
    with Client(root.query) as c:
        def settled(node: str) -> dict:
            want = slurm.figures()
            got = cluster_figures(c, node)
            return same(got, want) and got

        got = wait_for(lambda: settled("login-slurm"), timeout=30, what="the Slurm adapter's figures = sinfo/squeue")
        # five 2-core jobs on 3 x 4 cores, two 4-core ones waiting, n3 drained
        assert got["jobs_running"] == 5 and got["jobs_pending"] == 2 and got["jobs_total"] == 7
        assert got["cores_total"] == 12 and got["cores_used"] == 10 and got["cores_requested"] == 8
        assert got["nodes_admin_down"] == 1 and got["nodes_busy"] + got["nodes_idle"] == 2
        assert got["utilization"] == pytest.approx(10 / 12, abs=1e-4)
        assert got["power_on"] == 1.0
        wait_for(lambda: settled("login-pbs"), timeout=30, what="the PBS-style wrapper's figures = sinfo/squeue")
        [now] = c.call("cluster", cluster="c1")  # the op behind `clumon cluster`: the same figures
        whole = now["partitions"][""]
        assert now["source"] in ("login-slurm", "login-pbs") and now["stale"] is False
        assert (whole["cores"]["used"], whole["jobs"]["pending"], whole["nodes"]["admin_down"]) == (10, 2, 1)
        assert whole["utilization"] == pytest.approx(10 / 12, abs=1e-4)
        assert now["partitions"]["debug"]["jobs"]["running"] == 5  # per partition too
        # the dashboard's overview draws its scheduler cards from /api/v1/cluster: the same figures
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/v1/cluster?cluster=c1", timeout=10) as r:
            [web] = json.loads(r.read())["result"]
        assert web["partitions"][""]["cores"] == whole["cores"] and web["partitions"][""]["jobs"] == whole["jobs"]

        pid = int((slurm.dir / "slurmd-n2.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        got = wait_for(lambda: settled("login-slurm") if slurm.figures()["nodes_offline"] == 1 else False,
                       timeout=120, interval=1.0, what="n2 offline in sinfo and in the figures")
        assert got["power_on"] == pytest.approx(2 / 3, abs=1e-4)
        assert got["cores_total"] == 12
        wait_for(lambda: settled("login-pbs"), timeout=30, what="the wrapper sees n2 offline too")


def clumon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", *args], capture_output=True, text=True, timeout=60)


def squeue_jobs(slurm: Slurm) -> dict[str, tuple[str, str, str]]:
    """id -> (state word, user, node list) of the jobs squeue lists now."""
    out = {}
    for line in slurm.run("squeue", "-h", "-a", "-t", "all", "-o", "%i|%T|%u|%N").split():
        jid, state, user, nodes = line.split("|")
        out[jid] = (state, user, nodes)
    return out


def test_jobs_are_kept_in_sql_and_joined_to_their_nodes_samples(slurm, tree):
    """Each job's row follows squeue (state, user, nodes); a finished job keeps its
    row with its end; ``clumon job`` shows the samples of the node that ran it;
    ``clumon jobs`` and ``clumon report utilization`` answer from the same rows."""
    tree.env.update(slurm.env)
    root = tree.root()
    tree.agent("login-slurm", [root.port], **scheduler("slurm"))
    tree.agent("n1", [root.port])  # the clumon agent of Slurm's node n1
    # what an earlier test left on the cluster goes; everything here runs on n1
    subprocess.run(["scancel", "-u", "root"], env=slurm.env, capture_output=True, timeout=30)
    wait_for(lambda: squeue_jobs(slurm) == {} or all(s not in ("RUNNING", "PENDING", "COMPLETING")
                                                    for s, _, _ in squeue_jobs(slurm).values()),
             timeout=60, what="no job left from earlier tests")
    long_id = slurm.run("sbatch", "--parsable", "-n", "2", "-w", "n1", "--wrap", "sleep 120").strip()
    short_id = slurm.run("sbatch", "--parsable", "-n", "1", "-w", "n1", "--wrap", "sleep 4").strip()
    waiting_id = slurm.run("sbatch", "--parsable", "-N", "1", "-n", "4", "-w", "n1", "--wrap", "sleep 60").strip()
    with Client(root.query) as c:
        def rows() -> dict[str, dict]:
            return {j["id"]: j for j in c.call("jobs", cluster="c1", since=3600)}

        def agree() -> dict | bool:
            listed, got = squeue_jobs(slurm), rows()
            for jid in (long_id, short_id, waiting_id):
                if jid not in listed:
                    continue
                state, user, nodes = listed[jid]
                row = got.get(jid)
                if row is None or row["raw_state"] != state or row["user"] != user:
                    return False
                if state == "RUNNING" and tuple(row["nodes"]) != expand_hostlist(nodes):
                    return False
            return got

        got = wait_for(lambda: (a := agree()) and a.get(long_id, {}).get("state") == "running"
                       and a.get(waiting_id, {}).get("state") == "pending" and a,
                       timeout=30, what="job rows = squeue (one running on n1, one waiting)")
        assert got[long_id]["nodes"] == ["n1"] and got[long_id]["cores"] == 2
        assert got[long_id]["start_time"] is not None and got[waiting_id]["start_time"] is None
        # a job that ends keeps its row, with its end
        done = wait_for(lambda: rows().get(short_id, {}).get("state") == "finished" and rows()[short_id],
                        timeout=60, what="the short job finished in its row")
        assert done["end_time"] >= done["start_time"] and done["raw_state"] in ("COMPLETED", "GONE")
        slurm.run("scancel", waiting_id)
        cancelled = wait_for(lambda: rows().get(waiting_id, {}).get("state") == "finished" and rows()[waiting_id],
                             timeout=30, what="the cancelled job finished in its row")
        assert cancelled["raw_state"] in ("CANCELLED", "GONE")
        # the job's node, watched by clumon: its samples over the run
        shown = wait_for(lambda: (j := c.call("job", id=long_id))["nodes"].get("n1", {}).get("node_load1", {})
                         .get("points") and j, timeout=60, what="n1's samples in the job's answer")
        assert shown["job"]["id"] == long_id and shown["missing"] == []
        start = shown["job"]["start_time"]
        assert all(p[0] >= start for p in shown["nodes"]["n1"]["node_load1"]["points"])
        assert [j["id"] for j in c.call("jobs", user="nobody-at-all")] == []
        with pytest.raises(Exception, match="unknown_job|no job"):
            c.call("job", id="999999")
    endpoint = ["--endpoint", root.query]
    out = clumon("job", long_id, *endpoint)
    assert out.returncode == 0 and "n1" in out.stdout and "load1" in out.stdout, out.stdout + out.stderr
    out = clumon("jobs", "--state", "finished", "--json", *endpoint)
    assert out.returncode == 0 and {short_id, waiting_id} <= {j["id"] for j in json.loads(out.stdout)}
    out = clumon("report", "utilization", "--cluster", "c1", "--csv", *endpoint)
    assert out.returncode == 0 and out.stdout.splitlines()[0].startswith("cluster,period,utilization"), out.stderr
    out = clumon("report", "utilization", "--json", *endpoint)
    report = json.loads(out.stdout)
    assert [cl["cluster"] for cl in report["clusters"]] == ["c1"]
    assert {r["user"] for r in report["users"]} == {"root"}
    out = clumon("cluster", "c1", *endpoint)
    assert out.returncode == 0 and "cluster c1" in out.stdout
    out = clumon("job", "999999", *endpoint)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "no job" in out.stderr
