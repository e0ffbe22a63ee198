"""``clumon top``: the overview op, one printed frame, and the live view in a terminal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from harness import wait_for


def clumon(query: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint", query, *args],
                          capture_output=True, text=True, timeout=30, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})


def tmux_top(query: str, width: int, height: int):
    """``clumon top`` in a tmux session of that size: (session, a function reading its screen)."""
    session = f"clumon-top-{time.time_ns()}"
    cmd = f"{sys.executable} -m clumon.cli --endpoint {query} top --interval 0.5"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), cmd], check=True)
    return session, lambda: subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                           capture_output=True, text=True).stdout


def ended(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0


def test_top_overview_and_one_frame(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    tree.agent("node-2", [agg.port])

    def ready():
        out = clumon(root.query, "--json", "top")
        ov = json.loads(out.stdout) if out.returncode == 0 else {}
        return len(ov.get("hottest_memory", [])) == 2 and len(ov.get("hottest_cpu", [])) == 2 and ov

    ov = wait_for(ready, what="both nodes with CPU and memory figures")
    assert ov["states"] == {"up": 2}
    assert all(0.0 <= r["memory"] <= 1.0 and 0.0 <= r["cpu"] <= 1.0 for r in ov["hottest_memory"] + ov["hottest_cpu"])
    (agg_row,) = ov["aggregators"]
    assert agg_row["aggregator"] == "agg-1" and agg_row["nodes"] == 2 and agg_row["up"] == 2
    assert any(e["subject"] == "node-1" for e in ov["events"])

    frame = clumon(root.query, "top", "--once")
    assert frame.returncode == 0, frame.stderr
    for words in ("hottest by CPU", "node-1", "node-2", "agg-1", "recent events"):
        assert words in frame.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_runs_full_screen_in_a_terminal(tree):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    tree.agent("node-1", [agg.port])
    wait_for(lambda: "node-1" in clumon(root.query, "top", "--once").stdout, what="node-1 in top")
    session, screen_of = tmux_top(root.query, 160, 50)
    try:
        screen = wait_for(lambda: (s := screen_of()) and "hottest by CPU" in s and "node-1" in s and s,
                          what="the live view")
        assert "aggregators" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        wait_for(lambda: ended(session), what="top exits on Ctrl-C")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_at_80x24_shows_names_whole_and_q_quits(tree):
    root = tree.root()
    agg = tree.aggregator("rack-07-aggregator", [root.port])
    tree.agent("rack-07-node-0123", [agg.port])
    wait_for(lambda: "rack-07-node-0123" in clumon(root.query, "top", "--once").stdout, what="the node in top")
    session, screen_of = tmux_top(root.query, 80, 24)
    try:
        screen = wait_for(lambda: (s := screen_of()) and "rack-07-node-0123" in s and s, what="the live view at 80x24")
        assert "rack-07-aggregator" in screen and "…" not in screen, screen
        assert all(len(line) <= 80 for line in screen.splitlines())
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_for(lambda: ended(session), what="top exits on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
