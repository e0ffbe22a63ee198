"""Service and process watch with real processes: a TCP server killed with SIGKILL
runs again (found by its port) in a new timestamped log; a service that dies at
once goes fatal and waits for `clumon service start`; dependencies and
node-manager rules; two copies with min = 2; forbidden, suspicious and
over-limit processes; `clumon service restart 'node-*'` through two tiers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import wait_for

from clumon.cli.client import Client
from clumon.cli.daemon import free_port

SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening on", sys.argv[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


@pytest.fixture
def server(tmp_path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def reaper():
    """Every pid the test learns of is killed at the end (services outlive their agent)."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def clumon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", *args], capture_output=True, text=True, timeout=90)


def services(c: Client, reaper: set[int] | None = None, **args) -> dict[tuple[str, str], dict]:
    got = {(s["node"], s["name"]): s for s in c.call("services", **args)["services"]}
    if reaper is not None:
        for s in got.values():
            reaper.update(s["pids"])
    return got


def events(c: Client, node: str, kind: str) -> list[dict]:
    return c.call("events", node=node, kind=kind, limit=1000)


def web(port: int, server: Path, log_dir: Path, **more) -> dict:
    return {"name": "web", "port": port, "start": [sys.executable, str(server), str(port)], "log_dir": str(log_dir),
            "check_interval": 0.5, "start_secs": 0.5, **more}


def test_a_killed_service_runs_again_in_a_new_log(tree, tmp_path, server, reaper):
    port, logs = free_port(), tmp_path / "logs"
    root = tree.root()
    tree.agent("n1", [root.port], service=[web(port, server, logs)])
    with Client(root.query) as c:
        first = wait_for(lambda: (s := services(c, reaper).get(("n1", "web"))) and s["state"] == "running" and s,
                         what="web running")
        pid = first["pids"][0]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        again = wait_for(lambda: (s := services(c, reaper).get(("n1", "web"))) and s["state"] == "running"
                         and s["pids"] and s["pids"][0] != pid and s, interval=0.05, what="web running again")
        took = time.monotonic() - killed
        assert took <= 0.5 + 0.5 + 1.0 + 0.3, took  # check_interval + start_secs + 1 s (+ this test's polling)
        assert again["restarts"] == 1
        files = sorted(p.name for p in logs.iterdir())
        host = __import__("socket").gethostname()
        assert len(files) == 2 and all(re.fullmatch(rf"web\.{re.escape(host)}\.{port}\.\d{{4}}-\d\d-\d\d\.\d\d-\d\d-\d\d(\.\d+)?",
                                                    f) for f in files), files
        assert all("listening on" in (logs / f).read_text() for f in files)
        states = [e["attrs"]["state"] for e in reversed(events(c, "n1", "service_state"))]
        assert "running" in states and states.count("starting") == 2
        actions = [e for e in events(c, "n1", "service_action") if e["attrs"]["action"] == "start"]
        assert len(actions) == 2 and all(e["attrs"]["ok"] for e in actions)
        values = c.call("latest", node="n1", series=["clumon_service_*"])["values"]
        assert values['clumon_service_up{service="web"}'][0] == 1.0
        assert values['clumon_service_restarts_total{service="web"}'][0] == 1.0


def test_a_service_that_dies_at_once_goes_fatal_then_waits_for_an_operator(tree, tmp_path, server, reaper):
    port, flag = free_port(), tmp_path / "ok"
    start = ["/bin/sh", "-c", f'test -f {flag} && exec {sys.executable} {server} {port}; exit 3']
    analytics_port = free_port()
    root = tree.root()
    tree.agent("n1", [root.port], service=[
        {"name": "query-engine", "port": port, "start": start, "check_interval": 0.3, "start_secs": 0.3,
         "max_restarts": 2, "restart_window": 60},
        web(analytics_port, server, tmp_path / "logs") | {"name": "analytics-api"},
        web(free_port(), server, tmp_path / "logs2") | {"name": "reporter", "depends_on": ["query-engine"]},
    ], rule=[{"when": {"service": "query-engine", "state": "fatal"}, "then": {"stop": "analytics-api"}}])
    with Client(root.query) as c:
        got = wait_for(lambda: (s := services(c, reaper))[("n1", "query-engine")]["state"] == "fatal" and s,
                       timeout=60, what="query-engine fatal")
        qe = got[("n1", "query-engine")]
        assert "no more tries" in qe["detail"]
        starts = [e for e in events(c, "n1", "service_action")
                  if e["attrs"]["service"] == "query-engine" and e["attrs"]["action"] == "start"]
        assert len(starts) == 3  # the first start and max_restarts (2) more
        # the rule stopped analytics-api; the dependency stopped reporter
        got = wait_for(lambda: (s := services(c, reaper))[("n1", "analytics-api")]["state"] == "stopped"
                       and s[("n1", "reporter")]["state"] == "stopped" and s, what="both stopped")
        assert got[("n1", "reporter")]["held_by"] == "query-engine"
        fired = wait_for(lambda: events(c, "n1", "rule_fired"), what="the rule's event at the root")
        assert fired and fired[0]["attrs"]["action"] == "stop" and fired[0]["attrs"]["target"] == "analytics-api"
        time.sleep(1.5)
        assert len([e for e in events(c, "n1", "service_action") if e["attrs"]["service"] == "query-engine"
                    and e["attrs"]["action"] == "start"]) == 3  # not tried again
        # an operator fixes it and starts it: reporter, held by the dependency, starts again
        flag.write_text("ok")
        out = clumon("service", "start", "n1", "query-engine", "--endpoint", root.query)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: (s := services(c, reaper))[("n1", "query-engine")]["state"] == "running"
                 and s[("n1", "reporter")]["state"] == "running", timeout=30, what="query-engine and reporter")
        assert services(c)[("n1", "analytics-api")]["state"] == "stopped"  # a rule's stop holds


def test_two_copies_with_min_2_and_a_watched_only_service(tree, tmp_path, server, reaper):
    marker = f"copy-{os.getpid()}-{time.time_ns()}"
    script = tmp_path / f"{marker}.py"
    shutil.copy(server, script)
    root = tree.root()
    tree.agent("n1", [root.port], service=[
        {"name": "pair", "cmdline": re.escape(marker), "min": 2, "start": [sys.executable, str(script), "0"],
         "check_interval": 0.3, "start_secs": 0.3},
        {"name": "sshd-ish", "cmdline": f"no-such-program-{marker}"},
    ])
    with Client(root.query) as c:
        got = wait_for(lambda: (s := services(c, reaper)[("n1", "pair")])["state"] == "running" and s,
                       timeout=30, what="two copies")
        assert got["count"] == 2
        os.kill(got["pids"][0], signal.SIGKILL)
        again = wait_for(lambda: (s := services(c, reaper)[("n1", "pair")])["state"] == "running" and s["count"] == 2
                         and got["pids"][0] not in s["pids"] and s, timeout=30, what="two copies again")
        assert got["pids"][1] in again["pids"]  # the survivor was left alone
        watched = services(c)[("n1", "sshd-ish")]
        assert watched["state"] == "exited" and watched["managed"] is False


def test_forbidden_suspicious_and_over_limit_processes(tree, tmp_path, reaper):
    sleep = shutil.which("sleep")
    miner = tmp_path / "cryptominer"
    shutil.copy(sleep, miner)
    evil_dir = tmp_path / "drop"
    evil_dir.mkdir()
    evil = evil_dir / "evil-bin"
    shutil.copy(sleep, evil)
    marker = f"cpuhog-{time.time_ns()}"
    root = tree.root()
    tree.agent("n1", [root.port], processes={
        "check_interval": 0.3, "suspicious_dirs": [str(evil_dir)],
        "forbidden": [{"name": "cryptominer", "action": "kill"}],
        "limits": [{"cmdline": marker, "cpu_ratio": 0.5, "for": 1.0, "action": "renice"}]})
    with Client(root.query) as c:
        wait_for(lambda: c.call("latest", node="n1", series=["clumon_process_flags*"])["values"], what="flags series")
        bad = subprocess.Popen([str(miner), "300"])
        reaper.add(bad.pid)
        odd = subprocess.Popen([str(evil), "300"])
        reaper.add(odd.pid)
        time.sleep(0.3)
        evil.unlink()  # a deleted executable, from a suspicious place
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass", marker])
        reaper.add(hog.pid)
        flags = lambda: {(e["attrs"]["kind"], e["attrs"]["pid"]): e for e in events(c, "n1", "process_flag")}  # noqa: E731
        got = wait_for(lambda: (f := flags()) and ("forbidden", bad.pid) in f and ("suspicious", odd.pid) in f
                       and ("over_limit", hog.pid) in f and f, timeout=30, what="three flags")
        assert got[("forbidden", bad.pid)]["attrs"]["outcome"] == "killed"
        assert bad.wait(timeout=10) == -signal.SIGKILL
        why = got[("suspicious", odd.pid)]["attrs"]["reason"]
        assert "drop" in why  # under a suspicious directory (and deleted, reported as well)
        assert got[("over_limit", hog.pid)]["attrs"]["outcome"] == "reniced to 19"
        nice = int(Path(f"/proc/{hog.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert nice == 19
        procs = c.call("procs", node="n1")
        # the hog is among the top (first on a quiet box; a busy one may tie it)
        assert hog.pid in [p["pid"] for p in procs["top_cpu"][:3]]
        assert {f["kind"] for f in procs["flagged"]} >= {"suspicious", "over_limit"}
        out = clumon("procs", "n1", "--endpoint", root.query)
        assert out.returncode == 0 and "flagged" in out.stdout


def test_restart_through_two_tiers_with_each_nodes_outcome(tree, tmp_path, server, reaper):
    root = tree.root()
    agg = tree.aggregator("agg-a", [root.port])
    for i in (1, 2):
        tree.agent(f"node-{i}", [agg.port], service=[web(free_port(), server, tmp_path / f"logs{i}")])
    tree.agent("node-3", [agg.port])  # no such service there
    with Client(root.query) as c:
        before = wait_for(lambda: (s := services(c, reaper)) and all(
            s.get((f"node-{i}", "web"), {}).get("state") == "running" for i in (1, 2)) and s, what="both running")
    out = clumon("service", "restart", "node-*", "web", "--endpoint", root.query, "--json")
    assert out.returncode == 0, out.stderr
    result = __import__("json").loads(out.stdout)
    assert set(result["nodes"]) == {"node-1", "node-2", "node-3"}
    for i in (1, 2):
        r = result["nodes"][f"node-{i}"]
        assert r["action"] == "restart" and r["stopped"] == before[(f"node-{i}", "web")]["pids"]
        assert r["state"] in ("starting", "running")
    assert "no services or processes watched here" in result["nodes"]["node-3"]["error"]
    assert out.returncode == 0  # --json prints every outcome
    with Client(root.query) as c:
        wait_for(lambda: (s := services(c, reaper, service="web")) and all(
            s[(f"node-{i}", "web")]["state"] == "running"
            and s[(f"node-{i}", "web")]["pids"] != before[(f"node-{i}", "web")]["pids"] for i in (1, 2)),
            what="both running with new pids")
    table = clumon("services", "web", "--state", "running", "--endpoint", root.query)
    assert table.returncode == 0 and "services (2)" in table.stdout and "node-1" in table.stdout


def test_an_agent_restart_neither_restarts_a_healthy_service_nor_loses_its_count(tree, tmp_path, server, reaper):
    from harness import restart

    port = free_port()
    root = tree.root()
    agent = tree.agent("n1", [root.port], service=[web(port, server, tmp_path / "logs")])
    with Client(root.query) as c:
        first = wait_for(lambda: (s := services(c, reaper).get(("n1", "web"))) and s["state"] == "running" and s,
                         what="running")
        os.kill(first["pids"][0], signal.SIGKILL)
        second = wait_for(lambda: (s := services(c, reaper).get(("n1", "web"))) and s["state"] == "running"
                          and s["pids"] != first["pids"] and s, what="running again")
        assert second["restarts"] == 1
        agent.stop()  # SIGTERM: the service, in a session of its own, goes on
        os.kill(second["pids"][0], 0)
        agent = restart(tree, agent)
        back = wait_for(lambda: (s := services(c, reaper).get(("n1", "web"))) and s["state"] == "running" and s,
                        what="running after the agent's restart")
        assert back["pids"] == second["pids"] and back["restarts"] == 1  # adopted, not started again
        assert len(list((tmp_path / "logs").iterdir())) == 2
