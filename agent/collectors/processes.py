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


class ProcessesCollector:
    """``node_processes{state=...}``, ``node_processes_threads`` and the rank-indexed
    top-N series described in the module docstring.

    One read of each /proc/PID/stat (a single ``os.read``, no psutil objects)
    costs a fifth of psutil's ``process_iter``; the owner is looked up only for
    the few processes that make a top list.
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
    ) -> None:
        self._procfs = procfs
        self._top_n = top_n
        self._clock = clock
        self._cores = cores or os.cpu_count() or 1
        self._tick = 1.0 / os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._user_of = user_of or _user_name
        self._users: dict[int, str | None] = {}
        # pid (as listed in /proc) -> (start time in ticks, utime + stime).
        self._prev: dict[str, tuple[int, int]] = {}
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
        letters, threads, cpu, mem, seen = _scan(self._procfs, entries, self._prev)
        elapsed = None if self._prev_time is None else now - self._prev_time
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
#: candidates, pid -> (start, ticks)). Candidates are (amount, pid, stat line).
_Scan = tuple[dict[bytes, int], int, list[tuple[int, str, bytes]], list[tuple[int, str, bytes]],
              dict[str, tuple[int, int]]]


def _scan(procfs: str, entries: list[str], prev: dict[str, tuple[int, int]]) -> _Scan:
    """Read /proc/PID/stat of every pid in ``entries``.

    This loop runs once per process, hundreds of times per scan, so it is one
    flat function: no call per process, pids kept as the strings listdir gave,
    and the command name cut out later only for the few leaders. Each file is
    read with one ``os.read``: the line is a few hundred bytes, and a second read
    only to see EOF would add a syscall per process.
    """
    o_open, o_read, o_close = os.open, os.read, os.close
    flags = os.O_RDONLY | os.O_CLOEXEC
    letters: dict[bytes, int] = {}
    threads = 0
    cpu: list[tuple[int, str, bytes]] = []
    mem: list[tuple[int, str, bytes]] = []
    seen: dict[str, tuple[int, int]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fd = o_open(f"{procfs}/{entry}/stat", flags)
        except OSError:
            continue  # vanished since listdir
        try:
            raw = o_read(fd, 4096)
        except OSError:
            continue
        finally:
            o_close(fd)
        # comm may itself contain ")" or spaces: the fields start after the last ")".
        fields = raw[raw.rfind(b")") + 2 :].split(None, 22)
        try:
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            start = int(fields[19])
            rss = int(fields[21])
            threads += int(fields[17])
        except (IndexError, ValueError):
            continue
        state = fields[0]
        letters[state] = letters.get(state, 0) + 1
        seen[entry] = (start, ticks)
        before = prev.get(entry)
        # The start time tells a reused pid from the process that had it before.
        if before is not None and before[0] == start and ticks > before[1]:
            cpu.append((ticks - before[1], entry, raw))
        if rss > 0:
            mem.append((rss, entry, raw))
    return letters, threads, cpu, mem, seen


def _comm(raw: bytes) -> str:
    return raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode(errors="replace")
