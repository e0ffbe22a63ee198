"""Promon with real processes and the real /proc: an over-limit episode is reported
once (not at every check) and again only when it comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clumon.agent.watch.config import LimitRule, ProcessesConfig
from clumon.agent.watch.procs import ProcTable
from clumon.agent.watch.promon import Promon


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


def promon(cfg: ProcessesConfig) -> tuple[Promon, list]:
    events: list = []
    return Promon(cfg, ProcTable(), lambda *e: events.append(e), lambda: {os.getpid()}), events


def judge(mon: Promon) -> None:
    mon.procs.scan()
    mon.judge(time.time())


def test_an_over_limit_episode_is_reported_once_and_again_when_it_comes_back(spawn):
    marker = f"hog-{time.time_ns()}"
    mon, events = promon(ProcessesConfig(suspicious=False, limits=(
        LimitRule(cmdline=marker, cpu_ratio=0.2, for_=0.0, action="renice"),)))
    hog = spawn(sys.executable, "-c", "while True: pass", marker)
    flags = lambda: [e for e in events if e[0] == "process_flag" and e[2]["pid"] == hog.pid]  # noqa: E731
    judge(mon)  # the first look: ticks to compare with
    for _ in range(4):  # over at each check, its CPU share a little different each time
        time.sleep(0.2)
        judge(mon)
    assert len(flags()) == 1, [e[1] for e in flags()]
    assert flags()[0][2]["outcome"] == "reniced to 19"
    hog.send_signal(signal.SIGSTOP)  # the episode ends
    try:
        time.sleep(0.1)
        judge(mon)
        time.sleep(0.2)
        judge(mon)
        assert hog.pid not in mon.flags["over_limit"]
    finally:
        hog.send_signal(signal.SIGCONT)  # and another one begins
    for _ in range(3):
        time.sleep(0.2)
        judge(mon)
    assert len(flags()) == 2, [e[1] for e in flags()]
