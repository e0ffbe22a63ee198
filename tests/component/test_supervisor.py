"""The supervisor with real processes and the real /proc, on the test's clock: a
start that hangs is killed after start_timeout and counted as a failed start; a
stale pidfile is not a running service; flapping goes fatal."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from clumon.agent.watch.config import ServiceConfig
from clumon.agent.watch.procs import ProcTable
from clumon.agent.watch.services import Supervisor
from clumon.cli.daemon import free_port


def supervisor(tmp_path, *services: ServiceConfig) -> tuple[Supervisor, list]:
    events: list = []
    return Supervisor(services, ProcTable(), tmp_path / "state", lambda *e: events.append(e)), events


def check(sup: Supervisor, now: float) -> None:
    sup.procs.scan()
    sup.check(now)


def test_a_start_that_hangs_is_killed_after_start_timeout_and_backs_off(tmp_path):
    port = free_port()
    sup, events = supervisor(tmp_path, ServiceConfig(name="hung", port=port, start=("sleep", "300"),
                                                     check_interval=0.01, start_secs=0.0, start_timeout=0.5))
    s = sup.services["hung"]
    now = time.time()
    check(sup, now)
    assert s.state == "starting"
    pid = s.popen.pid
    check(sup, now + 0.2)
    assert s.state == "starting"  # not yet start_timeout
    check(sup, now + 1.0)
    assert s.state == "backoff" and "no service found" in s.detail
    assert s.popen.wait(timeout=5) != 0  # killed
    assert [e[2]["state"] for e in events if e[0] == "service_state"] == ["starting", "backoff"]
    assert not os.path.exists(f"/proc/{pid}") or b") Z" in open(f"/proc/{pid}/stat", "rb").read()


def test_a_stale_pidfile_is_not_a_running_service(tmp_path):
    pidfile = tmp_path / "svc.pid"
    sup, _ = supervisor(tmp_path, ServiceConfig(name="svc", pidfile=str(pidfile), check_interval=0.01))
    s = sup.services["svc"]
    live = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.05)
        pidfile.write_text(f"{live.pid}\n")
        check(sup, time.time())
        assert s.state == "running" and list(s.found) == [live.pid]
        # the file is older than the process now named in it: a pid reused (here, written
        # before the process existed), so not the service
        os.utime(pidfile, (time.time() - 3600, time.time() - 3600))
        check(sup, time.time() + 1)
        assert s.state == "exited" and s.found == {}
        pidfile.write_text("999999999\n")  # no such process
        check(sup, time.time() + 2)
        assert s.state == "exited"
    finally:
        live.kill()
        live.wait()


def test_flapping_goes_fatal_and_a_start_by_hand_tries_again(tmp_path):
    sup, events = supervisor(tmp_path, ServiceConfig(name="flap", port=free_port(), start=(sys.executable, "-c", "1"),
                                                     check_interval=0.01, start_secs=0.0, max_restarts=2,
                                                     restart_window=600))
    s = sup.services["flap"]
    now = time.time()
    for i in range(40):
        check(sup, now + i * 10)  # past each backoff delay (1, 2, 4 s), within restart_window
        if s.state == "fatal":
            break
        time.sleep(0.05)
    assert s.state == "fatal"
    starts = [e for e in events if e[0] == "service_action" and e[2]["action"] == "start"]
    assert len(starts) == 3
    check(sup, now + 10_000)
    assert s.state == "fatal" and len([e for e in events if e[0] == "service_action"]) == 3
    result = sup.start_by_hand(s, "asked by an operator", now + 10_001)
    assert result["state"] == "starting"
    saved = (tmp_path / "state" / "services.json").read_text()
    assert '"restarts_total": 3' in saved


SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(60)
"""


def test_a_forking_daemon_whose_start_exits_0_first_is_waited_for(tmp_path):
    port = free_port()
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    # the start command forks the daemon and exits 0 at once; the daemon listens a little later
    daemon = f"(sleep 0.5; exec {sys.executable} {server} {port}) </dev/null >/dev/null 2>&1 & exit 0"
    sup, events = supervisor(tmp_path, ServiceConfig(name="forker", port=port, start=("/bin/sh", "-c", daemon),
                                                     check_interval=0.01, start_secs=0.0, start_timeout=10))
    s = sup.services["forker"]
    check(sup, time.time())
    assert s.state == "starting"
    try:
        assert s.popen.wait(timeout=5) == 0
        check(sup, time.time())
        assert s.state == "starting", s.detail  # not a failed start: the daemon is on its way
        deadline = time.monotonic() + 10
        while s.state == "starting" and time.monotonic() < deadline:
            time.sleep(0.05)
            check(sup, time.time())
        assert s.state == "running" and len(s.found) == 1
        assert [e[2]["state"] for e in events if e[0] == "service_state"] == ["starting", "running"]
    finally:
        sup.stop(s, "the test is over")


def test_a_start_by_hand_looks_at_the_sockets_afresh(tmp_path):
    port = free_port()
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    sup, events = supervisor(tmp_path, ServiceConfig(name="web", port=port, check_interval=0.01, start_secs=0.0,
                                                     start=(sys.executable, str(server), str(port))))
    s = sup.services["web"]
    sup.stop(s, "not wanted yet")
    check(sup, time.time())  # nothing listens on the port: the check reads (and keeps) the socket tables
    by_hand = subprocess.Popen([sys.executable, str(server), str(port)])  # an operator starts it outside the agent
    try:
        deadline = time.monotonic() + 10
        while port not in ProcTable().tcp_listening() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = sup.start_by_hand(s, "asked by an operator")
        assert result["state"] == "running" and list(s.found) == [by_hand.pid]
        assert not [e for e in events if e[0] == "service_action" and e[2]["action"] == "start"]
    finally:
        by_hand.kill()
        by_hand.wait()
        sup.stop(s, "the test is over")
