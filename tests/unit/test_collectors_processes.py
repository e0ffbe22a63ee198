"""The processes collector: state counts and rank-indexed top-N, against a fake
/proc of PID directories, and once on this machine's /proc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from clumon.agent.collectors.processes import ProcessesCollector
from test_collectors_io import Clock
from test_collectors_system import as_dict, check_real, put

TICK = 1.0 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


def stat_line(pid: int, comm: str, state: str = "S", ticks: int = 0, threads: int = 1,
              start: int = 100, rss: int = 0, flags: int = 4194304) -> str:
    utime, stime = ticks - ticks // 3, ticks // 3
    return (f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 10 0 0 0 {utime} {stime} "
            f"0 0 20 0 {threads} 0 {start} 123456 {rss} 18446744073709551615 1 1 0 0 0 0 0\n")


def make(root: Path, procs: dict[int, dict]) -> None:
    for pid, spec in procs.items():
        put(root, f"{pid}/stat", stat_line(pid, **spec))


def test_state_counts_and_threads(tmp_path: Path) -> None:
    make(tmp_path, {
        1: dict(comm="systemd", state="S", threads=1, rss=100),
        2: dict(comm="kthreadd", state="S"),
        3: dict(comm="kworker/0:0", state="I"),
        40: dict(comm="a.out", state="R", threads=16, rss=5000),
        41: dict(comm="dd", state="D"),
        42: dict(comm="defunct", state="Z"),
        43: dict(comm="gdb-target", state="t"),
        44: dict(comm="weird", state="X"),
    })
    (tmp_path / "45").mkdir()  # vanished between listdir and open: no stat file
    (tmp_path / "self").mkdir()  # non-pid entries are ignored
    put(tmp_path, "46/stat", "46 (broken")  # truncated line
    values = as_dict(ProcessesCollector(str(tmp_path), top_n=3).collect())
    assert values['node_processes{state="running"}'] == 1
    assert values['node_processes{state="sleeping"}'] == 2
    assert values['node_processes{state="idle"}'] == 1
    assert values['node_processes{state="disk_sleep"}'] == 1
    assert values['node_processes{state="zombie"}'] == 1
    assert values['node_processes{state="stopped"}'] == 1
    assert values['node_processes{state="other"}'] == 1
    assert values["node_processes_threads"] == 23


def test_top_n_is_rank_indexed_with_a_fixed_set_of_names(tmp_path: Path) -> None:
    clock = Clock()
    make(tmp_path, {
        10: dict(comm="idle", ticks=50, rss=10),
        11: dict(comm="busy (x) y", ticks=100, rss=300),  # ")" and spaces in comm
        12: dict(comm="medium", ticks=100, rss=200, threads=4),
        13: dict(comm="kthread", ticks=100),
    })
    procs = ProcessesCollector(str(tmp_path), top_n=3, clock=clock, cores=2,
                               user_of=lambda uid: f"user{uid}")
    first = procs.collect()
    first_values = as_dict(first)
    assert first_values['node_top_cpu_ratio{rank="1"}'] is None  # no interval yet
    assert first_values['node_top_memory_bytes{rank="1"}'] == 300 * PAGE
    assert first_values['node_top_memory_pid{rank="1"}'] == 11
    assert first_values['node_top_memory_uid{rank="1"}'] == os.getuid()
    assert first_values['node_top_memory_pid{rank="3"}'] == 10
    assert procs.top_processes()["memory"][0]["name"] == "busy (x) y"

    clock.now += 10.0
    make(tmp_path, {
        10: dict(comm="idle", ticks=50, rss=10),
        11: dict(comm="busy (x) y", ticks=100 + 1000, rss=300),
        12: dict(comm="medium", ticks=100 + 400, rss=200, threads=4),
        13: dict(comm="kthread", ticks=100 + 200, start=999),  # pid reused: not a delta
    })
    second = procs.collect()
    values = as_dict(second)
    assert [s.name for s in second] == [s.name for s in first], "series names must not change"
    # 1000 ticks in 10 s on 2 cores
    assert values['node_top_cpu_ratio{rank="1"}'] == pytest.approx(1000 * TICK / 10 / 2)
    assert values['node_top_cpu_pid{rank="1"}'] == 11
    assert values['node_top_cpu_ratio{rank="2"}'] == pytest.approx(400 * TICK / 10 / 2)
    assert values['node_top_cpu_pid{rank="2"}'] == 12
    # pid 10 used no CPU and 13 is a new process: rank 3 is held by nobody
    assert values['node_top_cpu_ratio{rank="3"}'] is None
    assert values['node_top_cpu_pid{rank="3"}'] is None
    assert values['node_top_cpu_uid{rank="3"}'] is None
    table = procs.top_processes()
    assert table["cpu"] == [
        {"rank": 1, "pid": 11, "uid": os.getuid(), "user": f"user{os.getuid()}",
         "name": "busy (x) y", "cpu_ratio": pytest.approx(1000 * TICK / 20)},
        {"rank": 2, "pid": 12, "uid": os.getuid(), "user": f"user{os.getuid()}",
         "name": "medium", "cpu_ratio": pytest.approx(400 * TICK / 20)},
    ]
    assert len(values) == 7 + 1 + 2 * 3 * 3


def test_user_lookup_is_cached(tmp_path: Path) -> None:
    make(tmp_path, {pid: dict(comm="x", rss=pid) for pid in range(10, 15)})
    calls = []

    def user_of(uid: int) -> str:
        calls.append(uid)
        return "someone"

    procs = ProcessesCollector(str(tmp_path), user_of=user_of)
    procs.collect()
    procs.collect()
    assert calls == [os.getuid()]


def test_missing_procfs(tmp_path: Path) -> None:
    assert ProcessesCollector(str(tmp_path / "nope")).collect() == []


@linux_only
def test_real_processes() -> None:
    procs = ProcessesCollector()
    procs.collect()
    values = check_real(procs)
    assert sum(v for k, v in values.items() if k.startswith("node_processes{")) > 1
    assert values["node_processes_threads"] >= 1
    assert values['node_top_memory_pid{rank="1"}'] is not None
    leaders = procs.top_processes()
    assert leaders["memory"][0]["rss_bytes"] == values['node_top_memory_bytes{rank="1"}']
    assert all(isinstance(row["name"], str) and row["name"] for row in leaders["memory"])


def test_cpu_share_is_capped_at_the_whole_node(tmp_path: Path) -> None:
    clock = Clock()
    make(tmp_path, {7: dict(comm="spin", ticks=0, rss=1)})
    procs = ProcessesCollector(str(tmp_path), clock=clock, cores=1)
    procs.collect()
    clock.now += 0.001  # a one-tick step over 1 ms would read as 10 cores
    make(tmp_path, {7: dict(comm="spin", ticks=1, rss=1)})
    assert as_dict(procs.collect())['node_top_cpu_ratio{rank="1"}'] == 1.0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("fds", [0, 2, 100])
def test_held_files_give_the_same_answers_and_are_closed_when_a_pid_goes(tmp_path: Path, fds: int) -> None:
    clock = Clock()
    make(tmp_path, {pid: dict(comm=f"p{pid}", ticks=10, rss=pid, threads=2) for pid in range(20, 26)})
    before = _open_fds()
    procs = ProcessesCollector(str(tmp_path), top_n=2, clock=clock, cores=1, fds=fds)
    first = as_dict(procs.collect())
    assert _open_fds() - before == min(fds, 6)
    assert first["node_processes_threads"] == 12 and first['node_top_memory_pid{rank="1"}'] == 25

    clock.now += 10.0
    make(tmp_path, {21: dict(comm="p21", ticks=10 + 300, rss=21, threads=2)})  # busy now; the rest unchanged
    for pid in (24, 25):
        (tmp_path / f"{pid}/stat").unlink()
        (tmp_path / str(pid)).rmdir()
    second = as_dict(procs.collect())
    assert second['node_processes{state="sleeping"}'] == 4 and second["node_processes_threads"] == 8
    assert second['node_top_cpu_pid{rank="1"}'] == 21
    assert second['node_top_cpu_ratio{rank="1"}'] == pytest.approx(300 * TICK / 10)
    assert second['node_top_cpu_pid{rank="2"}'] is None, "unchanged lines used no CPU"
    assert second['node_top_memory_pid{rank="1"}'] == 23
    assert _open_fds() - before == min(fds, 4), "the files of pids that went are closed"
    procs.close()
    assert _open_fds() == before


@linux_only
def test_a_real_process_that_exits_is_dropped_and_its_file_closed() -> None:
    import subprocess
    child = subprocess.Popen(["sleep", "60"])
    procs = ProcessesCollector(fds=4096)
    try:
        procs.collect()
        assert str(child.pid) in procs._prev and procs._prev[str(child.pid)].fd >= 0
    finally:
        child.kill()
        child.wait()
    procs.collect()
    assert str(child.pid) not in procs._prev
    assert all(p.fd >= 0 for p in procs._prev.values())
    procs.close()


@pytest.mark.parametrize("fds", [0, 100])
def test_a_stat_line_longer_than_the_first_read_is_read_whole(tmp_path: Path, fds: int) -> None:
    # stat lines are read 479 bytes at first (a small object); a longer one again whole
    from clumon.agent.collectors.processes import _STAT_READ

    clock = Clock()
    long_comm = "x" * (_STAT_READ + 40)  # a fake /proc may have any length
    make(tmp_path, {7: dict(comm=long_comm, state="R", ticks=100, rss=321),
                    8: dict(comm="short", state="S", rss=5)})
    c = ProcessesCollector(str(tmp_path), top_n=2, clock=clock, fds=fds, user_of=lambda uid: "u")
    c.collect()
    clock.now += 1.0
    make(tmp_path, {7: dict(comm=long_comm, state="R", ticks=150, rss=321)})
    values = as_dict(c.collect())
    assert values['node_processes{state="running"}'] == 1
    assert values['node_top_memory_pid{rank="1"}'] == 7
    assert values['node_top_memory_bytes{rank="1"}'] == 321 * PAGE
    assert values['node_top_cpu_pid{rank="1"}'] == 7
    assert c.top_processes()["cpu"][0]["name"] == long_comm
    c.close()


KTHREAD_FLAGS = 0x00208040  # PF_KTHREAD | PF_NOFREEZE | PF_FORKNOEXEC


def test_kernel_threads_are_read_once_in_a_while_and_their_cpu_averaged(tmp_path: Path) -> None:
    """Kernel threads are most of the processes on a node; read every 45 s or so,
    counted as they were in between, their CPU share averaged over the time since
    their last read, whatever the spacing of the scans (a sync read forces one)."""
    from clumon.agent.collectors.processes import KTHREAD_REREAD_S

    clock = Clock()
    procs = ProcessesCollector(str(tmp_path), top_n=2, clock=clock, cores=2, user_of=str)
    kticks = 0

    def scan(after: float, kstate: str = "I", job: int = 0) -> dict:
        nonlocal kticks
        kticks += round(3 * after)  # 3 ticks a second, all the time
        make(tmp_path, {
            100: dict(comm="job", state="R", ticks=job, rss=50),
            7: dict(comm="kworker/0:1", state=kstate, ticks=kticks, flags=KTHREAD_FLAGS),
        })
        clock.now += after
        return as_dict(procs.collect())

    first = scan(10.0)
    assert first['node_processes{state="idle"}'] == 1
    t = 0.0
    while t + 10.0 < KTHREAD_REREAD_S:  # not read again yet
        t += 10.0
        values = scan(10.0, kstate="R", job=int(100 * t))
        assert values['node_processes{state="running"}'] == 1, "the kernel thread as last read: idle"
        assert values['node_processes{state="idle"}'] == 1
        assert values['node_top_cpu_pid{rank="1"}'] == 100
        assert values['node_top_cpu_pid{rank="2"}'] is None
    # read again by a scan 0.5 s after the last one (a sync read): its share is over
    # the whole time since its last read, scaled to this half second
    values = scan(KTHREAD_REREAD_S - t - 0.4, kstate="R", job=int(100 * t))  # not yet
    assert values['node_processes{state="running"}'] == 1
    values = scan(0.5, kstate="R", job=int(100 * t) + 50)
    assert values['node_processes{state="running"}'] == 2
    assert values['node_top_cpu_pid{rank="2"}'] == 7 or values['node_top_cpu_pid{rank="1"}'] == 7
    shares = {values[f'node_top_cpu_pid{{rank="{r}"}}']: values[f'node_top_cpu_ratio{{rank="{r}"}}'] for r in (1, 2)}
    assert shares[7] == pytest.approx(3 * TICK / 2, rel=0.02)   # 3 ticks a second on 2 cores
    assert shares[100] == pytest.approx(100 * TICK / 2, rel=0.02)  # 50 ticks in 0.5 s
    # a kernel thread that is gone is gone at once (listdir), read or not
    import shutil
    shutil.rmtree(tmp_path / "7")
    clock.now += 10.0
    values = as_dict(procs.collect())
    assert values['node_processes{state="running"}'] == 1 and values['node_processes{state="idle"}'] == 0
