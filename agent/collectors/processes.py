"""Process counts by state and the top-N processes by CPU and by memory, from one
pass over /proc/PID/stat.

How top-N is expressed
----------------------
Series names must not change from one read to the next: a name carrying a pid,
a command or a user would make a new dictionary version (a new HELLO) each time
the leaders change. So the series are indexed by rank only, a fixed set of
``top_n`` ranks per list::

    node_top_cpu_ratio{rank="1"}      share of the node's CPU capacity (0..1)
    node_top_cpu_pid{rank="1"}        the pid holding that rank
    node_top_cpu_uid{rank="1"}        its owner's uid
    node_top_memory_bytes{rank="1"}   resident set size
    node_top_memory_pid{rank="1"}
    node_top_memory_uid{rank="1"}

A rank nobody holds (fewer processes, or none used any CPU) has ``None`` values;
CPU ranks are all ``None`` on the first read, which has no interval yet. Strings
(command name, user name) cannot be values, so ``ProcessesCollector.top_processes()``
returns the last read's leaders as a table (pid, uid, user, name, value) for the
agent to send where strings belong (an EVENT when the leaders change, a REPLY).
"""

from __future__ import annotations

import heapq
import os
import pwd
import time
from typing import Callable

from .base import Sample, series

#: /proc/PID/stat state letter -> label; letters not listed count as "other".
_STATES = {
    b"R": "running",
    b"S": "sleeping",
    b"D": "disk_sleep",
    b"Z": "zombie",
    b"T": "stopped",
    b"t": "stopped",
    b"I": "idle",
}
_STATE_NAMES = {label: series("node_processes", state=label) for label in (*dict.fromkeys(_STATES.values()), "other")}

#: Bound on the uid -> user name cache: a lookup may go to LDAP/SSSD on a
#: cluster, so it is done once per uid, but a node sees only so many users.
_USER_CACHE_MAX = 1024

#: Kernel threads (kworkers, ksoftirqd, migration: 60 of 85 processes on a small VM,
#: four or more per core on a big node) are read again once this many seconds have
#: passed since their last read (every 5th scan at the default 10 s), and in between
#: counted as they were. Their CPU share is averaged over the time since their last
#: read; they hold no memory. (A kernel thread's pid taken by a new process within
#: that time shows the new process as of the next read: late, not lost.)
KTHREAD_REREAD_S = 45.0
#: PF_KTHREAD in the flags field of /proc/PID/stat
_PF_KTHREAD = 0x00200000


class ProcessesCollector:
    """``node_processes{state=...}``, ``node_processes_threads`` and the rank-indexed
    top-N series described in the module docstring.

    One read of each /proc/PID/stat (a single ``pread``, no psutil objects)
    costs a fifth of psutil's ``process_iter``, and up to ``fds`` of those files
    (by default half of what RLIMIT_NOFILE allows, see ``fd_budget``) stay open
    between scans, which halves the kernel's share; the owner is looked up only
    for the few processes that make a top list.
    """

    name = "processes"
    default_interval = 10.0

    def __init__(
        self,
        procfs: str = "/proc",
        top_n: int = 5,
        clock: Callable[[], float] = time.monotonic,
        cores: int | None = None,
        user_of: Callable[[int], str | None] | None = None,
        fds: int | None = None,
    ) -> None:
        self._procfs = procfs
        self._top_n = top_n
        self._clock = clock
        self._cores = cores or os.cpu_count() or 1
        self._tick = 1.0 / os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._user_of = user_of or _user_name
        self._users: dict[int, str | None] = {}
        # pid (as listed in /proc) -> what the last scan read of it (``_Proc``)
        self._prev: dict[str, _Proc] = {}
        self._fd_budget = fd_budget() if fds is None else fds
        self._prev_time: float | None = None
        self._top: dict[str, list[dict]] = {"cpu": [], "memory": []}
        self._names = {
            kind: [
                tuple(series(m, rank=str(r)) for m in metrics)
                for r in range(1, top_n + 1)
            ]
            for kind, metrics in (
                ("cpu", ("node_top_cpu_ratio", "node_top_cpu_pid", "node_top_cpu_uid")),
                ("memory", ("node_top_memory_bytes", "node_top_memory_pid", "node_top_memory_uid")),
            )
        }

    def collect(self) -> list[Sample]:
        """Scan /proc once; a process that vanishes mid-scan is skipped."""
        try:
            entries = os.listdir(self._procfs)
        except OSError:
            return []
        now = self._clock()
        elapsed = None if self._prev_time is None else now - self._prev_time
        letters, threads, cpu, mem, seen = _scan(self._procfs, entries, self._prev, self._fd_budget, now, elapsed)
        self._prev, self._prev_time = seen, now

        counts = dict.fromkeys(_STATE_NAMES, 0)
        for letter, n in letters.items():
            counts[_STATES.get(letter, "other")] += n
        out = [Sample(_STATE_NAMES[label], n) for label, n in counts.items()]
        out.append(Sample("node_processes_threads", threads))
        cpu_scale = self._tick / elapsed / self._cores if elapsed and elapsed > 0 else None
        cpu_top = heapq.nlargest(self._top_n, cpu) if cpu_scale else []
        mem_top = heapq.nlargest(self._top_n, mem)
        self._top = {
            "cpu": self._table(cpu_top, "cpu_ratio", cpu_scale or 0.0, limit=1.0),
            "memory": self._table(mem_top, "rss_bytes", self._page_size),
        }
        out.extend(self._ranked("cpu", "cpu_ratio"))
        out.extend(self._ranked("memory", "rss_bytes"))
        return out

    def close(self) -> None:
        """Close the stat files held open between scans."""
        prev, self._prev = getattr(self, "_prev", {}), {}
        for p in prev.values():
            if p.fd >= 0:
                os.close(p.fd)

    def __del__(self) -> None:
        self.close()

    def top_processes(self) -> dict[str, list[dict]]:
        """The leaders of the last read: ``{"cpu": [...], "memory": [...]}``, each
        row ``{rank, pid, uid, user, name, cpu_ratio | rss_bytes}`` (msgpack-safe)."""
        return {kind: [dict(row) for row in rows] for kind, rows in self._top.items()}

    def _table(
        self, top: list[tuple[int, str, bytes]], key: str, scale: float, limit: float | None = None
    ) -> list[dict]:
        rows = []
        for rank, (amount, entry, raw) in enumerate(top, 1):
            pid = int(entry)
            uid = self._uid(pid)
            rows.append({
                "rank": rank,
                "pid": pid,
                "uid": uid,
                "user": None if uid is None else self._user(uid),
                "name": _comm(raw),
                # Ticks are 10 ms: over a very short interval one tick can look
                # like more than the whole node, so the share is capped at 1.
                key: amount * scale if limit is None else min(amount * scale, limit),
            })
        return rows

    def _ranked(self, kind: str, key: str) -> list[Sample]:
        rows = self._top[kind]
        out = []
        for i, (value_name, pid_name, uid_name) in enumerate(self._names[kind]):
            row = rows[i] if i < len(rows) else None
            out.append(Sample(value_name, None if row is None else row[key]))
            out.append(Sample(pid_name, None if row is None else row["pid"]))
            out.append(Sample(uid_name, None if row is None else row["uid"]))
        return out

    def _uid(self, pid: int) -> int | None:
        try:
            return os.stat(f"{self._procfs}/{pid}").st_uid
        except OSError:
            return None

    def _user(self, uid: int) -> str | None:
        if uid not in self._users:
            if len(self._users) >= _USER_CACHE_MAX:
                self._users.clear()
            self._users[uid] = self._user_of(uid)
        return self._users[uid]


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


#: One scan: (count per state letter, threads, cpu candidates, memory
#: candidates, pid -> what was read of it). Candidates are (amount, pid, stat line).
_Scan = tuple[dict[bytes, int], int, list[tuple[int, str, bytes]], list[tuple[int, str, bytes]],
              dict[str, "_Proc"]]

class _Proc:
    """What a scan keeps of a pid between scans."""

    __slots__ = ("fd", "line", "state", "start", "ticks", "rss", "threads", "read_at", "kthread")

    def __init__(self, fd: int, line: bytes, state: bytes, start: int, ticks: int, rss: int, threads: int,
                 read_at: float, kthread: bool):
        self.fd = fd  # held open between scans, or -1
        self.line = line
        self.state = state
        self.start = start
        self.ticks = ticks
        self.rss = rss
        self.threads = threads
        self.read_at = read_at  # the scan's clock
        self.kthread = kthread


def fd_budget(reserve: int = 256, most: int = 8192) -> int:
    """How many /proc/PID/stat files a scan may keep open: half of what the soft
    RLIMIT_NOFILE leaves after ``reserve``, at most ``most``."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 0
    if soft == resource.RLIM_INFINITY:
        return most
    return max(0, min(most, (soft - reserve) // 2))


#: A stat line is read into a bytes object small enough for CPython's small object
#: allocator (lines are ~150-350 bytes): a larger read shrunk in place leaves holes
#: that grow the collecting thread's heap. A line this long is read again whole.
_STAT_READ = 512 - 33


def _pread_line(fd: int) -> bytes:
    raw = os.pread(fd, _STAT_READ, 0)
    if len(raw) == _STAT_READ:
        raw = os.pread(fd, 4096, 0)
    return raw


def _read_new(path: str, keep: bool) -> tuple[int, bytes] | None:
    """(fd or -1, content) of a stat file not held open yet; None if it vanished."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = _pread_line(fd)
    except OSError:
        os.close(fd)
        return None
    if not keep:
        os.close(fd)
        fd = -1
    return fd, raw


def _scan(procfs: str, entries: list[str], prev: dict[str, _Proc], budget: int, now: float = 0.0,
          elapsed: float | None = None) -> _Scan:
    """Read /proc/PID/stat of every pid in ``entries``.

    This loop runs once per process, hundreds of times per scan, so it is one
    flat function: pids kept as the strings listdir gave, and the command name
    cut out later only for the few leaders. Up to ``budget`` stat files stay
    open between scans and are read again with one ``pread`` (no path walk, no
    open and close: half the kernel's work per process). A held file of a
    process that exited fails to read (ESRCH), also when its pid was reused, so
    the path is opened afresh. A line equal to the last scan's (an idle
    process) is not parsed again. A kernel thread is read only when
    ``KTHREAD_REREAD_S`` have passed since its last read (by ``now``), and its CPU
    ticks since then are scaled to ``elapsed``, the time since the last scan, that
    every other process's ticks span.
    """
    o_close, read_line = os.close, _pread_line
    not_before = now - KTHREAD_REREAD_S
    letters: dict[bytes, int] = {}
    threads = 0
    cpu: list[tuple[int, str, bytes]] = []
    mem: list[tuple[int, str, bytes]] = []
    seen: dict[str, _Proc] = {}
    held = sum(1 for p in prev.values() if p.fd >= 0)
    for entry in entries:
        p = prev.get(entry)
        raw = None
        if p is not None and p.kthread and p.read_at > not_before:
            # a kernel thread between its reads: counted as it was, no CPU candidate
            seen[entry] = p
            letters[p.state] = letters.get(p.state, 0) + 1
            threads += p.threads
            continue
        if p is not None and p.fd >= 0:
            try:
                raw = read_line(p.fd)
            except OSError:  # exited, or the pid now belongs to another process
                o_close(p.fd)
                p.fd = -1
                held -= 1
        elif p is None and not entry.isdigit():
            continue
        if raw is None:
            got = _read_new(f"{procfs}/{entry}/stat", held < budget)
            if got is None:
                continue  # vanished since listdir
            fd, raw = got
            if fd >= 0:
                held += 1
            if p is not None:
                p.fd = fd
        if p is not None and raw == p.line:
            # unchanged since the last scan: no CPU used, same state and memory
            p.read_at = now
            seen[entry] = p
            letters[p.state] = letters.get(p.state, 0) + 1
            threads += p.threads
            if p.rss > 0:
                mem.append((p.rss, entry, raw))
            continue
        # comm may itself contain ")" or spaces: the fields start after the last ")".
        fields = raw[raw.rfind(b")") + 2 :].split(None, 22)
        try:
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            start = int(fields[19])
            rss = int(fields[21])
            nthreads = int(fields[17])
            kthread = bool(int(fields[6]) & _PF_KTHREAD)
        except (IndexError, ValueError):
            if p is None and fd >= 0:
                o_close(fd)
                held -= 1
            elif p is not None:
                seen[entry] = p  # keep its descriptor; the line may be whole next time
            continue
        state = fields[0]
        threads += nthreads
        letters[state] = letters.get(state, 0) + 1
        # The start time tells a reused pid from the process that had it before.
        if p is not None and p.start == start and ticks > p.ticks:
            used = ticks - p.ticks
            if p.kthread and elapsed and now - p.read_at > elapsed:  # a kernel thread's ticks span several scans
                used = used * elapsed / (now - p.read_at)
            cpu.append((used, entry, raw))
        if rss > 0:
            mem.append((rss, entry, raw))
        if p is None:
            p = _Proc(fd, raw, state, start, ticks, rss, nthreads, now, kthread)
        else:
            p.line, p.state, p.start, p.ticks, p.rss, p.threads, p.read_at, p.kthread = (
                raw, state, start, ticks, rss, nthreads, now, kthread)
        seen[entry] = p
    for entry, p in prev.items():
        if p.fd >= 0 and entry not in seen:
            o_close(p.fd)
    return letters, threads, cpu, mem, seen


def _comm(raw: bytes) -> str:
    return raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode(errors="replace")
