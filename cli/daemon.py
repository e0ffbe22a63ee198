"""Daemons started as child processes (by ``clumon demo``, the tests and the
benchmarks), and a free port to give them.

A ``Daemon`` runs its command with stdout read by a thread: the readiness line
(``proto.runtime.READY_PREFIX`` + JSON) is kept as ``ready``, other lines (a
simulator's JSON stats) in ``lines``; stderr goes to its log file. ``stop`` sends
SIGTERM and waits, then kills the whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import IO

from clumon.proto.runtime import READY_PREFIX


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A daemon started as a child process, with its readiness line once seen."""

    def __init__(self, label: str, argv: list[str], log_path: Path, keep_lines: int = 1000):
        self.label = label
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None
        #: stdout lines other than the readiness line, newest last
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self._event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, env: dict[str, str] | None = None) -> "Daemon":
        """Start it in a session of its own (so ``stop`` can kill its children too)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log,
                                         env=env if env is not None else dict(os.environ, PYTHONUNBUFFERED="1"),
                                         start_new_session=True)
        self._thread = threading.Thread(target=self._watch, args=(self.proc.stdout,), daemon=True)
        self._thread.start()
        return self

    def _watch(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text.startswith(READY_PREFIX):
                self.ready = json.loads(text[len(READY_PREFIX):])
                self._event.set()
            else:
                self.lines.append(text)

    def wait_ready(self, timeout: float) -> bool:
        """Whether its readiness line came within ``timeout`` seconds (False at once if it exited)."""
        step = 0.05
        waited = 0.0
        while not self._event.wait(step):
            waited += step
            if waited >= timeout or (self.proc is not None and self.proc.poll() is not None):
                return self._event.is_set()
        return True

    def stats(self) -> dict | None:
        """The newest JSON line it printed (a simulator's stats)."""
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def pids(self) -> list[int]:
        """Its pid and those of its children (a simulator's workers)."""
        if self.proc is None:
            return []
        out = [self.proc.pid]
        try:
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{tid}/children") as fh:
                    out.extend(int(p) for p in fh.read().split())
        except OSError:
            pass
        return out

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL to its process group after ``timeout``; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(5)
        return self.proc.returncode


def write_toml(path: Path, values: dict) -> Path:
    """A TOML file: strings, numbers, bools, lists, one level of tables; tables
    inside lists or tables are written inline."""
    def fmt(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {fmt(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for k, v in values.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {fmt(vv)}" for kk, vv in v.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def run_ns(pid: int) -> int:
    """Nanoseconds on a CPU of all the process's threads (``/proc/PID/task/*/schedstat``):
    the same time as utime + stime, which the kernel scales to it, without their
    10 ms steps (0.008 % of a core over 120 s)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total
