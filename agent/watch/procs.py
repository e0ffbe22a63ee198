"""What the watch needs to know of the node's processes, read cheaply from /proc.

Each check lists /proc once; a process is read (cmdline, executable, owner,
start time) only the first time its pid is seen, and forgotten when the pid is
gone, so a steady node costs one directory listing per check. The start time
(field 22 of /proc/PID/stat, clock ticks since boot) tells a pid reused by
another program from the process first seen under it.

Listening sockets come from /proc/net/tcp, tcp6 and unix (never a sweep of
every process's connections); the process owning a socket is found through
/proc/PID/fd, looking first at the pids that owned it before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TCP_LISTEN = "0A"
UNIX_LISTEN = "01"  # SS_UNCONNECTED + __SO_ACCEPTCON flag in the Flags column


@dataclass(slots=True)
class Proc:
    pid: int
    start: int  # clock ticks after boot
    name: str  # comm
    cmdline: str  # arguments joined by spaces
    exe: str  # readlink of /proc/PID/exe ("" when not readable)
    uid: int
    ppid: int
    seen: int = 0  # the scan that saw it first


def stat_fields(procfs: str, pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    close = raw.rfind(b")")
    if close < 0:
        return None
    return raw[close + 2:].decode("ascii", "replace").split()


def start_ticks(procfs: str, pid: int) -> int | None:
    fields = stat_fields(procfs, pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


class ProcTable:
    """The node's processes as of the last ``scan``."""

    def __init__(self, procfs: str = "/proc"):
        self.procfs = procfs
        self.procs: dict[int, Proc] = {}
        self.new: list[Proc] = []  # seen for the first time at the last scan
        self.scans = 0

    def scan(self) -> None:
        try:
            pids = {int(e) for e in os.listdir(self.procfs) if e.isdigit()}
        except OSError:
            return
        self.scans += 1
        for gone in self.procs.keys() - pids:
            del self.procs[gone]
        self.new = []
        for pid in pids - self.procs.keys():
            p = self._read(pid)
            if p is not None:
                p.seen = self.scans
                self.procs[pid] = p
                self.new.append(p)

    def new_since(self, scan: int) -> list[Proc]:
        """The processes first seen after scan number ``scan``, whoever made the scans
        in between (the watch's check, the ``procs`` op, a start by hand)."""
        if scan == self.scans - 1:
            return self.new
        return [p for p in self.procs.values() if p.seen > scan]

    def _read(self, pid: int) -> Proc | None:
        base = f"{self.procfs}/{pid}"
        fields = stat_fields(self.procfs, pid)
        if not fields or len(fields) < 20:
            return None
        try:
            with open(f"{base}/comm", "rb") as f:
                name = f.read().decode("utf-8", "replace").strip()
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            uid = os.stat(base).st_uid
        except OSError:
            return None
        try:
            exe = os.readlink(f"{base}/exe")
        except OSError:
            exe = ""
        return Proc(pid, int(fields[19]), name, cmdline, exe, uid, int(fields[1]))

    def alive(self, pid: int, start: int) -> bool:
        """Whether ``pid`` is still the process that started at ``start``."""
        p = self.procs.get(pid)
        if p is not None:
            return p.start == start
        return start_ticks(self.procfs, pid) == start

    def refresh_exe(self, pid: int) -> str:
        """The executable now (a binary deleted after start shows `` (deleted)``)."""
        try:
            exe = os.readlink(f"{self.procfs}/{pid}/exe")
        except OSError:
            return ""
        p = self.procs.get(pid)
        if p is not None:
            p.exe = exe
        return exe

    # --- sockets -------------------------------------------------------------------------

    def tcp_listening(self) -> dict[int, set[int]]:
        """port -> inodes of the sockets listening on it (IPv4 and IPv6)."""
        out: dict[int, set[int]] = {}
        for name in ("tcp", "tcp6"):
            try:
                with open(f"{self.procfs}/net/{name}", "rb") as f:
                    lines = f.read().decode("ascii", "replace").splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                if len(parts) > 9 and parts[3] == TCP_LISTEN:
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    out.setdefault(port, set()).add(int(parts[9]))
        return out

    def unix_listening(self) -> dict[str, set[int]]:
        """socket path -> inodes of listening unix sockets."""
        out: dict[str, set[int]] = {}
        try:
            with open(f"{self.procfs}/net/unix", "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()[1:]
        except OSError:
            return out
        for line in lines:
            parts = line.split()
            # Num RefCount Protocol Flags Type St Inode Path
            if len(parts) >= 8 and int(parts[3], 16) & 0x10000 and parts[7].startswith("/"):
                out.setdefault(parts[7], set()).add(int(parts[6]))
        return out

    def socket_owners(self, inodes: set[int], hints: list[int] = ()) -> dict[int, str]:
        """pid -> the fd by which it holds any of ``inodes``: the ``hints`` first,
        then every process."""
        wanted = {f"socket:[{i}]" for i in inodes}
        found: dict[int, str] = {}
        for pid in hints:
            fd = self.holds(pid, wanted)
            if fd:
                found[pid] = fd
        if found:
            return found
        for pid in list(self.procs):
            fd = self.holds(pid, wanted)
            if fd:
                found[pid] = fd
        return found

    def holds(self, pid: int, wanted: set[str]) -> str:
        """The fd (its number, as text) by which ``pid`` holds one of ``wanted``, or ""."""
        fd_dir = f"{self.procfs}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return ""
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in wanted:
                    return fd
            except OSError:
                continue
        return ""

    def holds_fd(self, pid: int, fd: str, wanted: set[str]) -> bool:
        """Whether ``pid`` still holds one of ``wanted`` at ``fd`` (one readlink)."""
        try:
            return os.readlink(f"{self.procfs}/{pid}/fd/{fd}") in wanted
        except OSError:
            return False

    def cpu_ticks(self, pid: int) -> tuple[int, int] | None:
        """(utime + stime, rss pages) now."""
        fields = stat_fields(self.procfs, pid)
        if not fields or len(fields) < 22:
            return None
        return int(fields[11]) + int(fields[12]), int(fields[21])
