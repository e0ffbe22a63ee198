"""Promon's kinds besides must-run: forbidden, suspicious and over-limit processes,
judged after each scan of the process table.

* **forbidden**: a process whose name (comm, glob), cmdline (regex) or user a
  ``[[processes.forbidden]]`` rule names: reported, and killed with ``action = "kill"``.
* **suspicious** (``suspicious = true``): its executable deleted, or under one of
  ``suspicious_dirs``; its uid without a passwd entry; listening on a TCP port not
  in ``allowed_ports`` (when that list is given).
* **over-limit**: a process a ``[[processes.limits]]`` rule selects, above its
  ``cpu_ratio`` (share of one core) or ``rss_bytes`` for longer than ``for``:
  reported, and reniced (to 19) or killed as the rule says.

A process is reported once per kind and reason (not at every check); an over-limit
episode once per rule, and again only after it was under the limit in between. Each
report is a ``process_flag`` EVENT saying what was seen and what was done.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
import signal
from typing import Callable

from .config import LimitRule, ProcessesConfig
from .procs import Proc, ProcTable

Emit = Callable[[str, str, dict], None]
KINDS = ("forbidden", "suspicious", "over_limit")


class Promon:
    def __init__(self, cfg: ProcessesConfig, procs: ProcTable, emit: Emit, own_pids: Callable[[], set[int]]):
        self.cfg = cfg
        self.procs = procs
        self.emit = emit
        self.own_pids = own_pids
        self._forbidden = [(r, re.compile(r.cmdline) if r.cmdline else None) for r in cfg.forbidden]
        self._limits = [(r, re.compile(r.cmdline) if r.cmdline else None) for r in cfg.limits]
        self._uids: dict[int, bool] = {}
        #: (pid, start, kind, reason) already reported; over-limit's reason is the
        #: rule's index (its text carries the CPU share, different at every check)
        self._told: set[tuple[int, int, str, str | int]] = set()
        #: flagged now, by kind: pid -> reason
        self.flags: dict[str, dict[int, str]] = {k: {} for k in KINDS}
        #: limit tracking: (pid, start, rule index) -> (ticks, at, over_since or None)
        self._usage: dict[tuple[int, int, int], tuple[int, float, float | None]] = {}
        self._checks = 0
        self._judged_scan = 0  # the table's scans up to this one were judged
        self._listeners: dict[int, int] = {}  # socket inode -> owner pid (cached)

    def judge(self, now: float, clk_tck: float = float(os.sysconf("SC_CLK_TCK"))) -> None:
        self._checks += 1
        procs = self.procs.procs
        alive = {(p.pid, p.start) for p in procs.values()}
        self._told = {t for t in self._told if (t[0], t[1]) in alive}
        for kind in KINDS:
            self.flags[kind] = {pid: why for pid, why in self.flags[kind].items() if pid in procs}
        mine = self.own_pids()
        # every process new since the last judgement, not only the last scan's: the
        # `procs` op and a start by hand scan the table between two checks
        fresh = self.procs.new_since(self._judged_scan)
        self._judged_scan = self.procs.scans
        for p in fresh:
            if p.pid in mine:
                continue
            self._forbidden_check(p)
            if self.cfg.suspicious:
                self._suspicious_check(p, p.exe)
        if self.cfg.suspicious and self._checks % 12 == 0:
            for p in list(procs.values()):  # a binary deleted after its start
                if p.pid not in mine and p.exe and not p.exe.endswith(" (deleted)"):
                    exe = self.procs.refresh_exe(p.pid)
                    if exe.endswith(" (deleted)"):
                        self._suspicious_check(p, exe)
        if self.cfg.suspicious and self.cfg.allowed_ports:
            self._ports_check(mine)
        if self._limits:
            self._limits_check(now, clk_tck, mine)

    def _flag(self, kind: str, p: Proc, why: str, action: str = "report", extra: dict | None = None,
              reason: str | int | None = None) -> None:
        key = (p.pid, p.start, kind, why if reason is None else reason)
        self.flags[kind][p.pid] = why
        if key in self._told:
            return
        self._told.add(key)
        done = "reported"
        if action == "kill":
            done = _do(lambda: os.kill(p.pid, signal.SIGKILL), "killed")
        elif action == "renice":
            done = _do(lambda: os.setpriority(os.PRIO_PROCESS, p.pid, 19), "reniced to 19")
        self.emit("process_flag", f"{kind} process {p.pid} ({p.name}): {why}; {done}", {
            "kind": kind, "pid": p.pid, "name": p.name, "cmdline": p.cmdline[:500], "uid": p.uid,
            "user": _user(p.uid), "exe": p.exe, "reason": why, "action": action, "outcome": done, **(extra or {})})

    def _forbidden_check(self, p: Proc) -> None:
        for r, rx in self._forbidden:
            if r.name and not fnmatch.fnmatchcase(p.name, r.name):
                continue
            if rx is not None and not rx.search(p.cmdline):
                continue
            if r.user and _user(p.uid) != r.user:
                continue
            what = " ".join(f"{k}={v!r}" for k, v in (("name", r.name), ("cmdline", r.cmdline), ("user", r.user)) if v)
            self._flag("forbidden", p, f"matches the forbidden rule {what}", r.action)
            return

    def _suspicious_check(self, p: Proc, exe: str) -> None:
        if exe.endswith(" (deleted)"):
            self._flag("suspicious", p, f"its executable {exe[:-10]} was deleted")
        elif exe and any(exe == d or exe.startswith(d.rstrip("/") + "/") for d in self.cfg.suspicious_dirs):
            self._flag("suspicious", p, f"runs {exe}, under {os.path.dirname(exe)}")
        if p.uid not in self._uids:
            try:
                pwd.getpwuid(p.uid)
                self._uids[p.uid] = True
            except KeyError:
                self._uids[p.uid] = False
        if not self._uids[p.uid]:
            self._flag("suspicious", p, f"its uid {p.uid} has no passwd entry")

    def _ports_check(self, mine: set[int]) -> None:
        allowed = set(self.cfg.allowed_ports)
        for port, inodes in self.procs.tcp_listening().items():
            if port in allowed:
                continue
            cached = {self._listeners[i] for i in inodes if i in self._listeners}
            owners = cached or set(self.procs.socket_owners(inodes))
            for pid in owners:
                for i in inodes:
                    self._listeners[i] = pid
                p = self.procs.procs.get(pid)
                if p is not None and pid not in mine:
                    self._flag("suspicious", p, f"listens on port {port}, not in allowed_ports", extra={"port": port})
        if len(self._listeners) > 10_000:
            self._listeners.clear()

    def _limits_check(self, now: float, clk_tck: float, mine: set[int]) -> None:
        seen = set()
        for i, (r, rx) in enumerate(self._limits):
            for p in list(self.procs.procs.values()):
                if p.pid in mine or not _selected(r, rx, p):
                    continue
                got = self.procs.cpu_ticks(p.pid)
                if got is None:
                    continue
                ticks, rss_pages = got
                key = (p.pid, p.start, i)
                seen.add(key)
                prev = self._usage.get(key)
                over_since = prev[2] if prev else None
                over = False
                why = ""
                if r.rss_bytes and rss_pages * os.sysconf("SC_PAGE_SIZE") > r.rss_bytes:
                    over, why = True, f"RSS above {r.rss_bytes} bytes"
                if r.cpu_ratio and prev is not None and now > prev[1]:
                    share = (ticks - prev[0]) / clk_tck / (now - prev[1])
                    if share > r.cpu_ratio:
                        over, why = True, f"CPU {share:.2f} of a core, above {r.cpu_ratio:g}"
                if over:
                    over_since = now if over_since is None else over_since
                    if now - over_since >= r.for_:
                        self._flag("over_limit", p, f"{why} for {r.for_:g} s", r.action, reason=i)
                else:  # the episode is over: the next one is reported again
                    over_since = None
                    self.flags["over_limit"].pop(p.pid, None)
                    self._told.discard((p.pid, p.start, "over_limit", i))
                self._usage[key] = (ticks, now, over_since)
        self._usage = {k: v for k, v in self._usage.items() if k in seen}

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.flags.items()}

    def flagged(self) -> list[dict]:
        out = []
        for kind, by_pid in self.flags.items():
            for pid, why in sorted(by_pid.items()):
                p = self.procs.procs.get(pid)
                if p is not None:
                    out.append({"kind": kind, "pid": pid, "name": p.name, "user": _user(p.uid),
                                "cmdline": p.cmdline[:300], "reason": why})
        return out


def _selected(r: LimitRule, rx, p: Proc) -> bool:
    if rx is not None and not rx.search(p.cmdline):
        return False
    return not r.user or _user(p.uid) == r.user


_USERS: dict[int, str] = {}


def _user(uid: int) -> str:
    name = _USERS.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        if len(_USERS) < 4096:
            _USERS[uid] = name
    return name


def _do(action: Callable[[], None], done: str) -> str:
    try:
        action()
        return done
    except (ProcessLookupError, PermissionError) as exc:
        return f"could not: {exc.strerror or exc}"
