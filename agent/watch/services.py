"""Services the agent keeps running: finding them, their states, starts and stops.

States are supervisord's: ``stopped`` (not running, not wanted), ``starting``
(started, not yet ``start_secs`` old), ``running``, ``backoff`` (a start failed or
the service died: another try after a delay that doubles, with jitter),
``exited`` (a watched-only service that is not there), ``fatal`` (more than
``max_restarts`` starts within ``restart_window``, or a start that cannot run:
no more tries until an operator starts it). Every change is a ``service_state``
EVENT and every action a ``service_action`` EVENT (through ``on_event``).

Each start writes the service's output to a new file
``NAME.HOST.PORT.YYYY-mm-dd.HH-MM-SS`` under ``log_dir``; the oldest beyond
``keep_logs`` are removed. Started processes get a session of their own, so they
outlive the agent (with systemd's ``KillMode=process``); the agent keeps their
pids and start times, its restart counts, and which service holds a stopped
dependant, in ``state_dir/services.json`` and adopts them back when it starts again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import ServiceConfig
from .finder import Finder
from .procs import ProcTable, start_ticks

log = logging.getLogger("clumon.agent.watch")

STOPPED, STARTING, RUNNING, BACKOFF, EXITED, FATAL = "stopped", "starting", "running", "backoff", "exited", "fatal"
BACKOFF_MAX = 60.0

Emit = Callable[[str, str, dict], None]  # event type, message, attrs


@dataclass
class Service:
    cfg: ServiceConfig
    state: str = STOPPED
    since: float = 0.0
    #: the processes found at the last check: pid -> start ticks
    found: dict[int, int] = field(default_factory=dict)
    #: processes this agent started: pid -> start ticks (kept across agent restarts)
    started: dict[int, int] = field(default_factory=dict)
    #: when each start happened (within restart_window), and all starts ever
    starts: list[float] = field(default_factory=list)
    restarts_total: int = 0
    #: wanted running (False after a stop, or when held by a dependency)
    wanted: bool = True
    held_by: str = ""
    start_at: float = 0.0  # when the current start began
    retry_at: float = 0.0
    delay: float = 1.0
    popen: subprocess.Popen | None = None
    #: every process this agent started and has not reaped yet
    children: list = field(default_factory=list)
    log_path: str = ""
    next_check: float = 0.0
    detail: str = ""
    #: cmdline and exe finders: pid -> start of the processes that match, judged
    #: once per process (when the table first sees it), not at every check
    matches: dict[int, int] = field(default_factory=dict)
    matched_scan: int = -1
    #: port and unix_socket finders: the listening sockets last found (inodes), and
    #: the fd by which each copy held one
    inodes: set = field(default_factory=set)
    fds: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.cfg.name, "state": self.state, "since": self.since, "pids": sorted(self.found),
                "count": len(self.found), "min": self.cfg.min, "max": self.cfg.max,
                "restarts": self.restarts_total, "managed": bool(self.cfg.start), "wanted": self.wanted,
                "held_by": self.held_by, "log": self.log_path, "detail": self.detail,
                "finder": f"{self.cfg.finder}={getattr(self.cfg, self.cfg.finder)}"}


class Supervisor:
    """Every ``[[service]]`` of the agent."""

    def __init__(self, services: tuple[ServiceConfig, ...], procs: ProcTable, state_dir: Path, emit: Emit,
                 clock: Callable[[], float] = time.time):
        self.procs = procs
        self.state_file = Path(state_dir) / "services.json"
        self.emit = emit
        self.clock = clock
        self.services: dict[str, Service] = {s.name: Service(s) for s in services}
        self.host = socket.gethostname()
        self.finder = Finder(procs)
        #: checks that found every due service where it was, without a scan
        self.quick_checks = 0
        self._dirty = False
        #: told of each state change (node-manager rules, dependencies)
        self.listeners: list[Callable[[Service, str, str], None]] = []
        self._load()

    # --- state kept across agent restarts --------------------------------------------------

    def _load(self) -> None:
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(saved, dict):
            return
        for name, s in self.services.items():
            old = saved.get(name)
            if not isinstance(old, dict):
                continue
            s.restarts_total = int(old.get("restarts_total", 0))
            s.starts = [float(t) for t in old.get("starts", []) if isinstance(t, (int, float))]
            s.wanted = bool(old.get("wanted", True))
            held_by = old.get("held_by", "")
            if isinstance(held_by, str) and held_by in self.services:  # started again when that one runs
                s.held_by = held_by
            if old.get("state") == FATAL:
                s.state, s.since = FATAL, float(old.get("since", 0.0))
            for pid, start in (old.get("started") or {}).items():
                if start_ticks(self.procs.procfs, int(pid)) == start:
                    s.started[int(pid)] = start  # adopted: the same process, still running
        log.info("services: state read back (%s)", ", ".join(f"{n}: {len(s.started)} adopted"
                                                              for n, s in self.services.items() if s.started))

    def save(self) -> None:
        if not self._dirty:
            return
        data = {n: {"restarts_total": s.restarts_total, "starts": s.starts[-100:], "wanted": s.wanted,
                    "held_by": s.held_by, "state": s.state, "since": s.since,
                    "started": {str(p): t for p, t in s.started.items()}}
                for n, s in self.services.items()}
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.state_file)
            self._dirty = False
        except OSError as exc:
            log.warning("services: cannot keep state in %s: %s", self.state_file, exc)

    # --- the check ------------------------------------------------------------------------

    def check(self, now: float | None = None, scan: Callable[[], None] | None = None, full: bool = True) -> None:
        """Look at every service that is due and act. With ``scan`` (which reads the
        process table) and ``full`` False, a check where every due service is
        steady and its copies are still there (one look each at what found them)
        reads nothing more: the table is scanned only when something changed."""
        now = self.clock() if now is None else now
        due = [s for s in self.services.values() if now >= s.next_check]
        if not due:
            return
        self._reap()
        if scan is not None:
            if not full and all(self.finder.still_there(s) for s in due):
                for s in due:
                    s.next_check = now + s.cfg.check_interval
                self.quick_checks += 1
                return
            scan()
        self.finder.new_check()
        for s in due:
            s.next_check = now + s.cfg.check_interval
            self._check_one(s, now)
        self._reap()
        self.save()

    def _check_one(self, s: Service, now: float) -> None:
        c = s.cfg
        s.found = self.finder.find(s)
        s.started = {p: t for p, t in s.started.items() if self.procs.alive(p, t)}
        count = len(s.found)
        enough = count >= max(c.min, 1) if c.min else count > 0
        if c.max and count > c.max and s.detail != f"{count} copies, at most {c.max}":
            s.detail = f"{count} copies, at most {c.max}"
            self.emit("service_state", f"{c.name}: {s.detail}", {"service": c.name, "state": s.state,
                                                                  "count": count, "max": c.max})
        if not c.start:  # watched only
            self._set(s, RUNNING if enough else EXITED, now, f"{count} of {c.min} found")
            return
        if s.state == FATAL or not s.wanted:
            if s.state not in (FATAL, STOPPED):
                self._set(s, STOPPED, now, "not wanted")
            return
        if s.state == STARTING:
            if self._start_failed(s, now):
                self._backoff(s, now, "the start did not come up")
            elif now - s.start_at < c.start_secs:
                return
            elif enough:
                self._set(s, RUNNING, now, f"{count} running")
                s.delay = 1.0
            elif s.popen is not None and s.popen.pid in s.found:
                self._start(s, now, f"{count} of {c.min} running: another copy")  # it came up; min wants more
            elif now - s.start_at >= c.start_timeout:
                self._kill_start(s)
                self._backoff(s, now, f"no service found {c.start_timeout:g} s after the start")
            return
        if enough:
            if s.state != RUNNING:
                self._set(s, RUNNING, now, f"{count} running")
            return
        if s.state == BACKOFF and now < s.retry_at:
            return
        if s.state == RUNNING:
            self.emit("service_state", f"{c.name}: {count} of {c.min} running; starting", {
                "service": c.name, "state": RUNNING, "count": count, "min": c.min})
        self._start(s, now, "fewer than min running" if s.state == RUNNING else "not running")

    def _start_failed(self, s: Service, now: float) -> bool:
        """The process we started exited with an error before the service showed up (or
        within start_secs). An exit 0 is a daemon that forked, the parent's exit its way
        of starting: the service is then waited for up to start_timeout."""
        if s.popen is None:
            return False
        code = s.popen.poll()
        if code is None:
            return False
        if code == 0:
            if not s.found:
                s.detail = "the start command exited 0: waiting for the service to show"
            return False
        if s.found and now - s.start_at >= s.cfg.start_secs:
            return False  # it forked, and its copy outlived the error
        s.detail = f"exited with code {code}"
        return True

    # --- actions -------------------------------------------------------------------------

    def _start(self, s: Service, now: float, why: str) -> None:
        c = s.cfg
        window = [t for t in s.starts if now - t < c.restart_window]
        if len(window) > c.max_restarts:
            self._set(s, FATAL, now, f"{len(window)} starts within {c.restart_window:g} s (max_restarts "
                                     f"{c.max_restarts}): no more tries until started by hand")
            return
        s.starts = window + [now]
        if s.restarts_total or s.state in (RUNNING, BACKOFF, EXITED):
            s.restarts_total += 1
        self._dirty = True
        try:
            s.popen, s.log_path = self._spawn(c, now)
        except OSError as exc:
            self.emit("service_action", f"{c.name}: start failed: {exc}", {
                "service": c.name, "action": "start", "ok": False, "reason": why, "detail": str(exc)})
            self._backoff(s, now, f"cannot start: {exc}")
            return
        s.children.append(s.popen)
        s.started[s.popen.pid] = start_ticks(self.procs.procfs, s.popen.pid) or 0
        s.start_at = now
        self.emit("service_action", f"{c.name}: started (pid {s.popen.pid}, {why}), output in {s.log_path}", {
            "service": c.name, "action": "start", "ok": True, "pid": s.popen.pid, "reason": why,
            "log": s.log_path, "restarts": s.restarts_total})
        self._set(s, STARTING, now, why)

    def _spawn(self, c: ServiceConfig, now: float) -> tuple[subprocess.Popen, str]:
        out = subprocess.DEVNULL
        path = ""
        if c.log_dir:
            Path(c.log_dir).mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y-%m-%d.%H-%M-%S", time.localtime(now))
            path = os.path.join(c.log_dir, f"{c.name}.{self.host}.{c.port or 0}.{stamp}")
            n = 1
            while os.path.exists(path):  # two starts within a second
                path = os.path.join(c.log_dir, f"{c.name}.{self.host}.{c.port or 0}.{stamp}.{n}")
                n += 1
            out = open(path, "ab")
        try:
            p = subprocess.Popen(list(c.start), cwd=c.cwd or None, env={**os.environ, **c.env}, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 user=c.user or None)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        if c.log_dir:
            self._prune_logs(c)
        return p, path

    def _prune_logs(self, c: ServiceConfig) -> None:
        prefix = f"{c.name}.{self.host}."
        try:
            logs = sorted((e for e in os.scandir(c.log_dir) if e.name.startswith(prefix)),
                          key=lambda e: e.stat().st_mtime)
        except OSError:
            return
        for e in logs[:-c.keep_logs]:
            try:
                os.unlink(e.path)
            except OSError:
                pass

    def _backoff(self, s: Service, now: float, why: str) -> None:
        s.retry_at = now + s.delay * (0.8 + 0.4 * random.random())
        s.delay = min(s.delay * 2, BACKOFF_MAX)
        self._set(s, BACKOFF, now, why)

    def _kill_start(self, s: Service) -> None:
        if s.popen is not None and s.popen.poll() is None:
            try:
                os.killpg(s.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, s: Service, why: str, now: float | None = None) -> dict:
        """Stop every copy: the stop signal, then KILL after ``stop_timeout``."""
        now = self.clock() if now is None else now
        s.wanted = False
        self._dirty = True
        self.finder.new_check()
        pids = set(self.finder.find(s)) | set(s.started)
        signalled = sorted(pids)
        for pid in pids:
            _signal(pid, s.cfg.signal)
        deadline = time.monotonic() + s.cfg.stop_timeout
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap()
            pids = {p for p in pids if _exists(p, self.procs.procfs)}
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        killed = sorted(pids)
        s.started.clear()
        s.found = {}
        self._set(s, STOPPED, now, why)
        self.emit("service_action", f"{s.cfg.name}: stopped ({why})" + (f"; killed {killed}" if killed else ""), {
            "service": s.cfg.name, "action": "stop", "ok": True, "reason": why, "killed": killed})
        self.save()
        return {"service": s.cfg.name, "action": "stop", "state": s.state, "stopped": signalled, "killed": killed}

    def start_by_hand(self, s: Service, why: str, now: float | None = None) -> dict:
        """Wanted again, out of fatal, tries counted from zero."""
        now = self.clock() if now is None else now
        s.wanted, s.held_by, s.starts, s.delay = True, "", [], 1.0
        self._dirty = True
        if s.state == FATAL:
            self._set(s, STOPPED, now, "started by hand")
        if not s.cfg.start:
            return {"service": s.cfg.name, "action": "start", "state": s.state,
                    "detail": "watched only: no start command"}
        s.next_check = 0.0
        self.procs.scan()
        self.finder.new_check()  # the socket tables of the last check may be old by now
        s.found = self.finder.find(s)
        if len(s.found) < max(s.cfg.min, 1):
            self._start(s, now, why)
        elif s.state != RUNNING:
            self._set(s, RUNNING, now, f"{len(s.found)} running")
        self.save()
        return {"service": s.cfg.name, "action": "start", "state": s.state, "pid": s.popen.pid if s.popen else None}

    def restart(self, s: Service, why: str) -> dict:
        stopped = self.stop(s, why)
        started = self.start_by_hand(s, why)
        return {**started, "action": "restart", "stopped": stopped["stopped"], "killed": stopped["killed"]}

    def _reap(self) -> None:
        """Collect the exit of every child that ended (no zombies left to look alive)."""
        for s in self.services.values():
            s.children = [c for c in s.children if c.poll() is None or c is s.popen]

    def _set(self, s: Service, state: str, now: float, why: str) -> None:
        if s.state == state:
            return
        old, s.state, s.since = s.state, state, now
        self._dirty = True
        s.detail = why
        log.info("service %s: %s -> %s (%s)", s.cfg.name, old, state, why)
        self.emit("service_state", f"{s.cfg.name}: {old} -> {state} ({why})", {
            "service": s.cfg.name, "old": old, "state": state, "reason": why, "pids": sorted(s.found),
            "restarts": s.restarts_total})
        for listener in self.listeners:
            listener(s, old, state)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exists(pid: int, procfs: str) -> bool:
    fields = None
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as f:
            fields = f.read()
    except OSError:
        return False
    return b") Z" not in fields  # a zombie is gone for us
