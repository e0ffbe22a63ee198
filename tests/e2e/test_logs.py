"""Log watch end to end: real files, real daemons, real SQLite.

A writer appends numbered lines while the file is rotated by rename and then by
copytruncate (once while the agent runs, once while it is dead), while the agent
is SIGKILLed and restarted twice and the aggregator killed once: every line is
stored exactly once, in order per file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import kill9, restart, wait_for

from clumon.cli.client import Client
from clumon.root.storage.logs import decode_chunk

pytestmark = pytest.mark.timeout(300)

RULE = {"name": "boom", "pattern": "BOOM", "event": True}


def stored_lines(db: Path) -> list[tuple[str, int, int, str]]:
    """(node, fid, offset, line) of every stored line (a duplicate would show twice)."""
    out = []
    with sqlite3.connect(db) as conn:
        for node, data in conn.execute("SELECT node, data FROM log_chunks ORDER BY id"):
            ts, fid, off, paths, lines, fields = decode_chunk(data).columns()
            out += [(node, fid[i], off[i], lines[i]) for i in range(len(lines))]
    return out


def numbers(db: Path) -> list[int]:
    return [int(m.group(1)) for *_, line in stored_lines(db) if (m := re.match(r"line (\d+) ", line))]


class Writer:
    """Appends numbered lines to ``path`` from a thread, like a logger that keeps its
    file open; ``rotate_rename`` and ``copytruncate`` do what logrotate does."""

    def __init__(self, path: Path, every: float = 0.002):
        self.path = path
        self.n = 0
        self.every = every
        self.lock = threading.Lock()
        self.fh = open(path, "a", buffering=1)
        self.stop = threading.Event()
        self.boom = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _line(self) -> str:
        boom = self.n % 97 == 5
        self.boom += boom
        line = f"line {self.n:07d} {'BOOM ' if boom else ''}{'x' * 150}\n"
        self.n += 1
        return line

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.fh.write(self._line())
            time.sleep(self.every)

    def rotate_rename(self, to: Path) -> None:
        with self.lock:
            os.rename(self.path, to)
            for _ in range(20):  # a logger writes on to the renamed file before it reopens
                self.fh.write(self._line())
            self.fh.close()
            self.fh = open(self.path, "a", buffering=1)

    def copytruncate(self, to: Path) -> None:
        with self.lock:  # as logrotate's copytruncate, with no line written between copy and truncate
            shutil.copyfile(self.path, to)
            os.truncate(self.path, 0)

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        self.fh.close()
        return self.n


def test_rotations_and_kills_store_every_line_once_in_order(tree, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    db = tmp_path / "clumon.db"
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    agent_cfg = {"log": [{"path": str(logs / "app.log*"), "source": "app"}], "log_rule": [RULE],
                 "log_default_rules": False, "log_poll_interval": 0.2, "drain_timeout": 10.0,
                 "interval": 1.0, "collectors": ["load"]}
    agent = tree.agent("n1", [agg.port], **agent_cfg)
    writer = Writer(logs / "app.log")
    try:
        wait_for(lambda: len(numbers(db)) > 300, timeout=60, what="first lines stored")
        writer.rotate_rename(logs / "app.log.1")
        time.sleep(1.0)
        kill9(agent)
        time.sleep(1.0)
        agent = restart(tree, agent)
        wait_for(lambda: len(numbers(db)) > writer.n - 200, timeout=60, what="lines after the first kill")
        writer.copytruncate(logs / "app.log.2")
        time.sleep(0.5)
        kill9(agg)
        time.sleep(1.0)
        agg = restart(tree, agg)
        time.sleep(0.5)
        kill9(agent)
        time.sleep(0.5)
        writer.copytruncate(logs / "app.log.3")  # while the agent is away: the copy continues it
        time.sleep(0.5)
        agent = restart(tree, agent)
        time.sleep(1.0)
    finally:
        total = writer.close()
    wait_for(lambda: len(numbers(db)) >= total, timeout=90, what=f"all {total} lines stored")
    assert agent.stop() == 0  # its last frames (series, acks) settle; positions kept
    time.sleep(1.0)  # anything sent twice would arrive by now
    got = stored_lines(db)
    nums = [int(line.split()[1]) for *_, line in got]
    assert sorted(nums) == list(range(total)), (
        f"missing {sorted(set(range(total)) - set(nums))[:10]}, {len(nums) - len(set(nums))} duplicates")
    by_file: dict[int, list[tuple[int, int]]] = {}
    for node, fid, off, line in got:
        by_file.setdefault(fid, []).append((off, int(line.split()[1])))
    assert len(by_file) >= 3  # app.log before rename, after it, and after the truncation
    for fid, pairs in by_file.items():
        in_file_order = [n for _, n in sorted(pairs)]
        assert in_file_order == sorted(in_file_order), f"file {fid:x}: lines out of order"
    # the pattern: one event per matching line, and the counter says the same
    with Client(root.query) as c:
        events = c.call("events", kind="log_match", since=3600, limit=100000)
        assert len(events) == writer.boom
        assert all("BOOM" in e["attrs"]["line"] and e["attrs"]["rule"] == "boom" for e in events)
        name = 'clumon_log_matches_total{source="app",rule="boom"}'
        wait_for(lambda: c.call("latest", node="n1")["values"].get(name, [None])[0] == writer.boom,
                 timeout=30, what=f"counter at {writer.boom}")
        # and the op finds them
        health = c.call("health")
        assert health["log_lines_stored"] == total
        assert health["log_lines_in"] == total + health["log_lines_duplicate"]
        found = c.call("logs", node="n*", grep="BOOM", since=3600, limit=100000)
        assert len(found["lines"]) == writer.boom
        assert c.call("logs", source="nope", since=3600)["lines"] == []
    # the command line, --json after the subcommand
    cli = [sys.executable, "-m", "clumon.cli", "logs", "--endpoint", root.query, "--grep", "BOOM", "--limit", "100000"]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60, env=tree.env)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["lines"]) == writer.boom
    out = subprocess.run([*cli, "--node", "n1", "--source", "app"], capture_output=True, text=True, timeout=60,
                         env=tree.env)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == writer.boom
    assert all(" n1 app: line " in x and "BOOM" in x for x in out.stdout.splitlines())
    bad = subprocess.run([*cli[:-4], "--grep", "(["], capture_output=True, text=True, timeout=60, env=tree.env)
    assert bad.returncode == 1 and "not a regex" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_log_directory_that_appears_later_and_the_default_rules(tree, tmp_path):
    """The glob's directory does not exist when the agent starts; the source's name
    comes from the path; a default rule (segfault) makes its event at the root."""
    later = tmp_path / "later" / "slurm"
    root = tree.root()
    tree.agent("n2", [root.port], log=[{"path": str(later / "slurmd*.log")}], log_poll_interval=0.2,
               interval=1.0, collectors=["load"])
    with Client(root.query) as c:
        wait_for(lambda: "n2" in [n["name"] for n in c.call("nodes")], what="the agent")
        later.mkdir(parents=True)
        with open(later / "slurmd.log", "a") as fh:
            fh.write("hello\nkernel: slurmstepd[77]: segfault at 0 ip 0 sp 0 error 4\n")
        got = wait_for(lambda: len(c.call("logs", node="n2", since=600)["lines"]) == 2 and
                       c.call("logs", node="n2", since=600), what="two lines stored")
        assert [x["source"] for x in got["lines"]] == ["slurmd", "slurmd"]
        events = wait_for(lambda: c.call("events", kind="log_match", since=600), what="the segfault event")
        assert [(e["subject"], e["attrs"]["rule"], e["attrs"]["source"]) for e in events] == [("n2", "segfault", "slurmd")]
    # --follow prints what is stored after it started, one JSON object a line
    follow = subprocess.Popen([sys.executable, "-m", "clumon.cli", "logs", "--follow", "--json", "--endpoint",
                               root.query, "--node", "n2", "--interval", "0.2"], stdout=subprocess.PIPE, text=True,
                              env=tree.env)
    try:
        seen = [json.loads(follow.stdout.readline())["line"] for _ in range(2)]  # what was there
        with open(later / "slurmd.log", "a") as fh:
            fh.write("third\n")
        seen.append(json.loads(follow.stdout.readline())["line"])
        assert seen[0] == "hello" and seen[2] == "third"
    finally:
        follow.kill()
        follow.wait(10)
