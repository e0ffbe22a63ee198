"""The watch as the agent runs it (``Watcher``), with real processes and the real
/proc, its checks called as its thread would call them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clumon.agent.watch.config import ForbiddenRule, ProcessesConfig, ServiceConfig
from clumon.agent.watch.watcher import Watcher
from clumon.cli.daemon import free_port


@pytest.fixture
def spawn():
    """Start processes that are killed at the end."""
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        p = subprocess.Popen(list(argv))
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()
        p.wait()


def watcher(tmp_path, services=(), processes=None, rules=()) -> tuple[Watcher, list]:
    events: list = []
    w = Watcher(services, processes, rules, "n1", tmp_path / "state", "/proc",
                lambda *samples: None, events.append)
    return w, events


@pytest.mark.parametrize("scan_by", ["procs op", "start by hand"])
def test_a_process_first_seen_by_another_scan_is_judged_all_the_same(tmp_path, spawn, scan_by):
    marker = f"{time.time_ns()}"
    svc = ServiceConfig(name="svc", cmdline=f"svc-{marker}", check_interval=0.1, start_secs=0.0,
                        start=(sys.executable, "-c", "import time; time.sleep(60)", f"svc-{marker}"))
    w, events = watcher(tmp_path, services=(svc,), processes=ProcessesConfig(
        suspicious=False, check_interval=0.1, forbidden=(ForbiddenRule(cmdline=f"forbidden-{marker}"),)))
    s = w.supervisor.services["svc"]
    try:
        w._check()
        bad = spawn(sys.executable, "-c", "import time; time.sleep(60)", f"forbidden-{marker}")
        if scan_by == "procs op":
            w._procs_now(5)  # `clumon procs NODE`: a scan of its own, between two checks
        else:
            w.supervisor.start_by_hand(s, "asked by an operator")  # it scans too
        w._check()
        w._flush()
        flagged = [e for e in events if e.type == "process_flag" and e.attrs["pid"] == bad.pid]
        assert len(flagged) == 1 and flagged[0].attrs["kind"] == "forbidden"
    finally:
        w.supervisor.stop(s, "the test is over")


def test_a_restarted_agent_knows_which_service_holds_a_stopped_dependant(tmp_path):
    marker = f"dependant-{time.time_ns()}"
    services = (ServiceConfig(name="a", port=free_port(), start=(sys.executable, "-c", "raise SystemExit(1)"),
                              check_interval=0.1, start_secs=0.0, max_restarts=0),
                ServiceConfig(name="b", cmdline=marker, depends_on=("a",), check_interval=0.1, start_secs=0.0,
                              start=(sys.executable, "-c", "import time; time.sleep(60)", marker)))
    w, _ = watcher(tmp_path, services=services)
    a, b = w.supervisor.services["a"], w.supervisor.services["b"]
    try:
        now = time.time()
        w.procs.scan()
        w.supervisor.check(now)  # both started
        a.popen.wait(timeout=10)
        w.procs.scan()
        w.supervisor.check(now + 1)  # a failed, b runs
        assert (a.state, b.state) == ("backoff", "running")
        w.procs.scan()
        w.supervisor.check(now + 10)  # a's second start is one too many: fatal, and b is stopped
        assert (a.state, b.state, b.held_by) == ("fatal", "stopped", "a")
    finally:
        w.supervisor.stop(b, "the test is over")
    again, _ = watcher(tmp_path, services=services)  # the agent restarted
    b = again.supervisor.services["b"]
    assert (b.wanted, b.held_by) == (False, "a")
    again._state_changed(again.supervisor.services["a"], "fatal", "running")  # a runs again (started by hand)
    assert b.wanted and b.held_by == ""


def test_events_emitted_in_the_watch_thread_all_reach_the_loop_in_order(tmp_path):
    w, events = watcher(tmp_path)
    n = 20_000

    def emit() -> None:
        for i in range(n):
            w._emit("test", "m", {"i": i})
    thread = threading.Thread(target=emit)
    thread.start()
    while thread.is_alive():  # the loop flushing while the thread emits
        w._flush()
    thread.join()
    w._flush()
    assert [e.attrs["i"] for e in events] == list(range(n))


def test_an_error_sending_the_series_is_logged_and_the_checks_go_on(tmp_path, caplog):
    sent: list = []

    def on_samples(source, interval, samples) -> None:
        sent.append(samples)
        if len(sent) == 1:
            raise RuntimeError("the uplink broke")
    w = Watcher((), ProcessesConfig(suspicious=False, check_interval=0.05), (), "n1", tmp_path / "state", "/proc",
                on_samples, lambda event: None)

    async def scenario() -> None:
        task = asyncio.create_task(w.run())
        deadline = time.monotonic() + 10
        while len(sent) < 3 and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not task.done(), task.exception()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await w.close()
    asyncio.run(scenario())
    assert len(sent) >= 3 and "the uplink broke" in caplog.text


SIGTERM_IGNORED = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_close_keeps_the_state_after_the_stop_under_way_in_the_watch_thread(tmp_path):
    marker = f"stubborn-{time.time_ns()}"
    w, _ = watcher(tmp_path, services=(ServiceConfig(
        name="stubborn", cmdline=marker, check_interval=0.05, start_secs=0.0, stop_timeout=1.0,
        start=(sys.executable, "-c", SIGTERM_IGNORED, marker)),))
    s = w.supervisor.services["stubborn"]
    w._check()
    pid = s.popen.pid
    deadline = time.monotonic() + 10
    while not ignores_sigterm(pid) and time.monotonic() < deadline:
        time.sleep(0.02)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(w._thread, w.supervisor.stop, s, "asked by the test")
        while s.wanted:  # the stop began: TERM sent, KILL after stop_timeout
            await asyncio.sleep(0.01)
        await w.close()  # the agent stops meanwhile
        saved = json.loads((tmp_path / "state" / "services.json").read_text())["stubborn"]
        assert saved["state"] == "stopped" and saved["started"] == {}, saved
        await stopping
    try:
        asyncio.run(scenario())
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
