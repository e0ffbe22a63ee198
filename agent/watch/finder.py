"""Finding a service's processes: by port or unix socket (through the fds of the
processes that held its listening socket, the kernel's socket tables only when
that fails), by cmdline regex or executable (each process judged once), by
pidfile (only while its process is older than the file); ``user`` narrows it.
A copy is a topmost matching process: a forking server's workers belong to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .procs import ProcTable, start_ticks

if TYPE_CHECKING:  # pragma: no cover
    from .services import Service


class Finder:
    """Finds services in a ``ProcTable``; the socket tables are read at most once a check."""

    def __init__(self, procs: ProcTable):
        self.procs = procs
        self._tcp: dict[int, set[int]] | None = None
        self._unix: dict[str, set[int]] | None = None

    def still_there(self, s: Service) -> bool:
        """Whether a steady service's copies are all where they were, looking only at
        them (no scan): a socket service's fd still holds its socket, another's
        processes still have their start time. Anything else (a state in motion, a
        watched service that is absent, a copy gone) wants a full look."""
        if s.state != "running" or not s.found or not s.wanted:
            return s.state in ("stopped", "fatal") and not s.wanted or s.state == "fatal"
        if s.cfg.port or s.cfg.unix_socket:
            if not s.inodes or s.fds.keys() != s.found.keys():
                return False
            wanted = {f"socket:[{i}]" for i in s.inodes}
            return all(self.procs.holds_fd(pid, s.fds[pid], wanted) for pid in s.found)
        return all(start_ticks(self.procs.procfs, pid) == start for pid, start in s.found.items())

    def new_check(self) -> None:
        """Forget the socket tables read during the last check."""
        self._tcp = self._unix = None

    def find(self, s: Service) -> dict[int, int]:
        """pid -> start ticks of the processes that are this service now."""
        c, procs = s.cfg, self.procs
        pids: set[int] = set()
        if c.port or c.unix_socket:
            pids = self._still_listening(s)
            if pids is None:  # something changed: read the kernel's socket tables
                if c.port:
                    if self._tcp is None:
                        self._tcp = procs.tcp_listening()
                    s.inodes = self._tcp.get(c.port, set())
                else:
                    if self._unix is None:
                        self._unix = procs.unix_listening()
                    s.inodes = self._unix.get(c.unix_socket, set())
                owners = procs.socket_owners(s.inodes, [*s.found, *s.started]) if s.inodes else {}
                pids = self._topmost(set(owners))
                s.fds = {p: owners[p] for p in pids}
            else:
                return {p: procs.procs[p].start for p in pids if p in procs.procs}  # a zombie holds no fds
        elif c.pidfile:
            pids = self._from_pidfile(c.pidfile)
        elif c.cmdline or c.exe:
            pids = self._topmost(self._matching(s))
        if c.user:
            try:
                import pwd
                uid = pwd.getpwnam(c.user).pw_uid
            except KeyError:
                uid = -1
            pids = {p for p in pids if p in procs.procs and procs.procs[p].uid == uid}
        return {p: procs.procs[p].start for p in pids if p in procs.procs and not zombie(p, procs.procfs)}

    def _still_listening(self, s: Service) -> set[int] | None:
        """The processes found last time, if each still holds the listening socket
        at the fd where it held it (a socket keeps its inode while open): one
        readlink each instead of the kernel's socket tables, whose read costs ~1 ms
        on a busy node (bench/agent_overhead.py --only services). None when that
        cannot tell."""
        if not s.found or not s.inodes or s.fds.keys() != s.found.keys():
            return None
        wanted = {f"socket:[{i}]" for i in s.inodes}
        for pid, start in s.found.items():
            if not self.procs.alive(pid, start) or not self.procs.holds_fd(pid, s.fds[pid], wanted):
                return None
        return set(s.found)

    def _matching(self, s: Service) -> set[int]:
        """The processes whose cmdline (regex) or executable is the service's: every
        process judged the first time it is seen, then only the new ones."""
        procs, c = self.procs, s.cfg
        if procs.scans == s.matched_scan:
            fresh = []  # this scan was judged already
        elif s.matched_scan < 0 or procs.scans != s.matched_scan + 1:
            fresh = list(procs.procs.values())  # first look, or a scan went by unseen
            s.matches = {}
        else:
            fresh = procs.new
        s.matched_scan = procs.scans
        if c.cmdline:
            rx = re.compile(c.cmdline)  # re keeps it compiled
            hit = lambda p: rx.search(p.cmdline) is not None  # noqa: E731
        else:
            hit = lambda p: p.exe == c.exe or p.exe == c.exe + " (deleted)"  # noqa: E731
        me = os.getpid()
        for p in fresh:
            if p.pid != me and hit(p):
                s.matches[p.pid] = p.start
        s.matches = {pid: t for pid, t in s.matches.items() if procs.procs.get(pid) is not None
                     and procs.procs[pid].start == t}
        return set(s.matches)

    def _topmost(self, pids: set[int]) -> set[int]:
        """One process per copy: a matching process whose parent matches too (a
        forking server's workers, a shell and its child) is part of its parent's copy."""
        procs = self.procs.procs
        return {p for p in pids if procs.get(p) is None or procs[p].ppid not in pids}

    def _from_pidfile(self, path: str) -> set[int]:
        """The pid in the file, if that process is still the one that wrote it: a
        pid reused by a process started after the file was written is stale."""
        try:
            text = Path(path).read_text().strip()
            mtime = os.stat(path).st_mtime
            pid = int(text.split()[0])
        except (OSError, ValueError, IndexError):
            return set()
        p = self.procs.procs.get(pid)
        if p is None:
            return set()
        started = _boot_time() + p.start / os.sysconf("SC_CLK_TCK")
        return {pid} if started <= mtime + 1.0 else set()


def zombie(pid: int, procfs: str) -> bool:
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as f:
            return b") Z" in f.read()
    except OSError:
        return True


_BOOT: list[float] = []


def _boot_time() -> float:
    if not _BOOT:
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime"):
                        _BOOT.append(float(line.split()[1]))
                        break
        except OSError:
            pass
        if not _BOOT:
            _BOOT.append(0.0)
    return _BOOT[0]
