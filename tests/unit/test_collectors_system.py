"""Parsing of the whole-node collectors (cpu, load, memory, swap, pressure, filefd,
uptime) against a fake /proc tree, and one sanity run of each on the real /proc."""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import pytest

from clumon.agent.collectors import Collector, Sample
from clumon.agent.collectors.cpu import CpuCollector
from clumon.agent.collectors.filefd import FileFdCollector
from clumon.agent.collectors.load import LoadCollector
from clumon.agent.collectors.memory import MemoryCollector
from clumon.agent.collectors.pressure import PressureCollector
from clumon.agent.collectors.swap import SwapCollector
from clumon.agent.collectors.uptime import UptimeCollector

TICK = 1.0 / os.sysconf("SC_CLK_TCK")
NAME = re.compile(r'^[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})?$')
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


def put(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def as_dict(samples: list[Sample]) -> dict[str, float | None]:
    names = [s.name for s in samples]
    assert len(names) == len(set(names)), "duplicate series names"
    return {s.name: s.value for s in samples}


def check_real(collector: Collector) -> dict[str, float | None]:
    """Shared sanity checks for a collector run on this machine's /proc."""
    assert isinstance(collector, Collector)
    samples = collector.collect()
    values = as_dict(samples)
    for name, value in values.items():
        assert NAME.match(name), name
        if value is not None:
            assert math.isfinite(value), name
            if "_ratio" in name:
                assert 0.0 <= value <= 1.0, (name, value)
            if name.split("{")[0].endswith(("_total", "_bytes", "_seconds")):
                assert value >= 0, (name, value)
    return values


STAT = """cpu  100 10 50 800 20 5 15 0 7 0
cpu0 50 5 25 400 10 2 8 0 7 0
cpu1 50 5 25 400 10 3 7 0 0 0
intr 123456 1 2 3 4 5
ctxt 999
btime 1700000000
processes 4242
procs_running 3
procs_blocked 1
softirq 777 1 2 3
"""
STAT_LATER = """cpu  150 10 100 1100 20 5 15 0 9 0
cpu0 100 5 25 420 10 2 8 0 9 0
cpu1 50 5 75 680 10 3 7 0 0 0
intr 123500 1 2 3 4 5
ctxt 1999
processes 4250
procs_running 1
procs_blocked 0
softirq 800 1 2 3
"""


def test_cpu_first_read_has_counters_but_no_ratios(tmp_path: Path) -> None:
    put(tmp_path, "stat", STAT)
    values = as_dict(CpuCollector(str(tmp_path)).collect())
    assert values['node_cpu_ratio{mode="user"}'] is None
    assert values['node_cpu_seconds_total{mode="user"}'] == pytest.approx(100 * TICK)
    assert values['node_cpu_seconds_total{mode="steal"}'] == 0
    # guest is already inside user: it must not become a mode of its own.
    assert not any("guest" in name for name in values)
    assert values["node_context_switches_total"] == 999
    assert values["node_intr_total"] == 123456
    assert values["node_softirqs_total"] == 777
    assert values["node_forks_total"] == 4242
    assert values["node_procs_running"] == 3
    assert values["node_procs_blocked"] == 1
    assert len(values) == 8 + 8 + 6


def test_cpu_ratios_are_shares_of_the_interval(tmp_path: Path) -> None:
    put(tmp_path, "stat", STAT)
    cpu = CpuCollector(str(tmp_path))
    cpu.collect()
    put(tmp_path, "stat", STAT_LATER)
    values = as_dict(cpu.collect())
    # deltas: user 50, system 50, idle 300 -> total 400
    assert values['node_cpu_ratio{mode="user"}'] == pytest.approx(0.125)
    assert values['node_cpu_ratio{mode="system"}'] == pytest.approx(0.125)
    assert values['node_cpu_ratio{mode="idle"}'] == pytest.approx(0.75)
    assert values['node_cpu_ratio{mode="iowait"}'] == 0
    ratios = [v for k, v in values.items() if k.startswith("node_cpu_ratio")]
    assert sum(ratios) == pytest.approx(1.0)
    assert not any("cpu=" in k for k in values), "per-CPU series must be off by default"


def test_cpu_per_cpu_series_and_backwards_counter(tmp_path: Path) -> None:
    put(tmp_path, "stat", STAT)
    cpu = CpuCollector(str(tmp_path), per_cpu=True)
    first = as_dict(cpu.collect())
    assert first['node_cpu_ratio{cpu="1",mode="idle"}'] is None
    # cpu0's idle goes forward 20, its iowait stays; cpu1 has system +50, idle +280
    put(tmp_path, "stat", STAT_LATER.replace("cpu0 100 5 25 420 10", "cpu0 100 5 25 420 4"))
    values = as_dict(cpu.collect())
    assert values['node_cpu_ratio{cpu="1",mode="system"}'] == pytest.approx(50 / 330)
    # iowait stepped back 10 -> 4: clamped to 0, never negative
    assert values['node_cpu_ratio{cpu="0",mode="iowait"}'] == 0
    assert values['node_cpu_ratio{cpu="0",mode="user"}'] == pytest.approx(50 / 70)
    assert len([k for k in values if "cpu=" in k]) == 16


def test_cpu_missing_or_garbled_file(tmp_path: Path) -> None:
    assert CpuCollector(str(tmp_path)).collect() == []
    put(tmp_path, "stat", "cpu  x y\nctxt notanumber\n")
    assert as_dict(CpuCollector(str(tmp_path)).collect()) == {"node_context_switches_total": None}


def _without_ratios(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v for k, v in values.items() if not k.startswith("node_cpu_ratio")}


@pytest.mark.parametrize("changed", [
    STAT_LATER.replace("ctxt 1999", "ctxt lots"),  # a value stops being a number
    STAT_LATER.replace("procs_blocked 0\n", ""),  # a key goes
    STAT_LATER.replace("processes 4250", "processes\t4250"),  # a key the line-by-line read does not see
    STAT_LATER.replace("btime 1700000000\n", "btime 1700000000\nguest_thing 5\n"),  # a line comes
    STAT_LATER.replace("softirq 800 1 2 3", "softirq 800 1 2 3 4"),  # a longer line
    STAT_LATER.replace("cpu1 50 5 75 680 10 3 7 0 0 0\n", ""),  # a CPU goes offline
    STAT_LATER.replace("intr 123500 1 2 3 4 5", "intr 123500 " + " ".join(["0"] * 5000)),  # more IRQs
    STAT_LATER.replace("intr 123500", "intr  123500"),
    STAT_LATER.replace("ctxt 1999\n", "") + "ctxt 1999\n",  # keys in another order
    STAT_LATER.replace("cpu  150", "cpu  x"),
    STAT_LATER.rstrip("\n"),
])
def test_cpu_layout_that_changes_between_reads(tmp_path: Path, changed: str) -> None:
    put(tmp_path, "stat", STAT)
    cpu = CpuCollector(str(tmp_path))
    cpu.collect()
    put(tmp_path, "stat", STAT_LATER.replace("ctxt 1999", "ctxt 1500"))
    cpu.collect()  # read with the layout learnt from the first
    put(tmp_path, "stat", changed.replace("cpu  150 10 100 1100", "cpu  150 10 100 1200"))  # 100 idle ticks
    values = as_dict(cpu.collect())
    fresh = as_dict(CpuCollector(str(tmp_path)).collect())
    assert list(values) == list(fresh)
    assert _without_ratios(values) == _without_ratios(fresh)
    if 'node_cpu_ratio{mode="user"}' in values:  # against the read before, not None
        assert values['node_cpu_ratio{mode="user"}'] == 0
        assert values['node_cpu_ratio{mode="idle"}'] == 1
    # and back: the layout is learnt again
    put(tmp_path, "stat", STAT_LATER)
    values = as_dict(cpu.collect())
    assert _without_ratios(values) == _without_ratios(as_dict(CpuCollector(str(tmp_path)).collect()))
    assert values["node_context_switches_total"] == 1999


def test_load(tmp_path: Path) -> None:
    put(tmp_path, "loadavg", "0.52 1.25 2.00 3/139 6896\n")
    assert as_dict(LoadCollector(str(tmp_path)).collect()) == {
        "node_load1": 0.52, "node_load5": 1.25, "node_load15": 2.0,
    }
    assert as_dict(LoadCollector(str(tmp_path / "nope")).collect()) == {
        "node_load1": None, "node_load5": None, "node_load15": None,
    }


def test_uptime(tmp_path: Path) -> None:
    put(tmp_path, "uptime", "490.48 866.22\n")
    assert as_dict(UptimeCollector(str(tmp_path)).collect()) == {"node_uptime_seconds": 490.48}
    assert as_dict(UptimeCollector(str(tmp_path / "nope")).collect()) == {"node_uptime_seconds": None}


MEMINFO = """MemTotal:       1000000 kB
MemFree:         200000 kB
MemAvailable:    600000 kB
Buffers:          10000 kB
Cached:          300000 kB
SwapCached:           0 kB
Active(anon):     23644 kB
Shmem:            69456 kB
HugePages_Total:      4
HugePages_Free:       1
Hugepagesize:      2048 kB
"""
VMSTAT = """nr_free_pages 123
pgpgin 10
pgpgout 20
pswpin 3
pswpout 4
allocstall_dma 1
allocstall_normal 5
pgfault 1000
pgmajfault 7
oom_kill 2
"""


def test_memory(tmp_path: Path) -> None:
    put(tmp_path, "meminfo", MEMINFO)
    put(tmp_path, "vmstat", VMSTAT)
    values = as_dict(MemoryCollector(str(tmp_path), page_size=4096).collect())
    assert values["node_memory_total_bytes"] == 1000000 * 1024
    assert values["node_memory_shared_bytes"] == 69456 * 1024
    assert values["node_memory_used_bytes"] == 400000 * 1024
    assert values["node_memory_used_ratio"] == pytest.approx(0.4)
    assert values["node_memory_hugepages_total_bytes"] == 4 * 2048 * 1024
    assert values["node_memory_hugepages_free_bytes"] == 1 * 2048 * 1024
    assert values["node_memory_paged_in_bytes_total"] == 10 * 1024
    assert values["node_memory_swap_out_bytes_total"] == 4 * 4096
    assert values["node_memory_major_page_faults_total"] == 7
    assert values["node_memory_oom_kills_total"] == 2
    assert values["node_memory_direct_reclaims_total"] == 6
    # keys the kernel lacks are absent, not None: the set of series stays fixed
    assert "node_memory_slab_bytes" not in values
    assert "node_memory_active_bytes" not in values  # Active(anon) is not Active


def test_memory_odd_lines_and_missing_files(tmp_path: Path) -> None:
    put(tmp_path, "meminfo", MEMINFO + "Weird line with words\n")
    put(tmp_path, "vmstat", "pgfault 12 extra\npgmajfault 3\n")
    values = as_dict(MemoryCollector(str(tmp_path), page_size=4096).collect())
    assert values["node_memory_total_bytes"] == 1000000 * 1024
    assert values["node_memory_major_page_faults_total"] == 3
    assert "node_memory_page_faults_total" not in values
    (tmp_path / "vmstat").unlink()
    values = as_dict(MemoryCollector(str(tmp_path)).collect())
    assert "node_memory_used_ratio" in values and "node_memory_page_faults_total" not in values
    assert MemoryCollector(str(tmp_path / "nope")).collect() == []


def test_swap(tmp_path: Path) -> None:
    put(tmp_path, "swaps", "Filename\tType\tSize\tUsed\tPriority\n"
        "/dev/sda2 partition 1000 250 -2\n/swap\\040file file 3000 750 -3\n")
    values = as_dict(SwapCollector(str(tmp_path)).collect())
    assert values == {
        "node_swap_size_bytes": 4000 * 1024,
        "node_swap_used_bytes": 1000 * 1024,
        "node_swap_free_bytes": 3000 * 1024,
        "node_swap_used_ratio": 0.25,
    }


def test_swap_none_configured(tmp_path: Path) -> None:
    put(tmp_path, "swaps", "Filename\tType\tSize\tUsed\tPriority\n")
    values = as_dict(SwapCollector(str(tmp_path)).collect())
    assert values["node_swap_size_bytes"] == 0
    assert values["node_swap_used_ratio"] is None


def test_pressure(tmp_path: Path) -> None:
    put(tmp_path, "pressure/cpu", "some avg10=1.50 avg60=0.24 avg300=0.56 total=7856314\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    put(tmp_path, "pressure/io", "some avg10=0.05 avg60=0.12 avg300=0.27 total=3751449\n"
        "full avg10=25.00 avg60=0.12 avg300=0.25 total=3442450\n")
    values = as_dict(PressureCollector(str(tmp_path)).collect())
    assert values == {
        "node_pressure_cpu_waiting_seconds_total": pytest.approx(7.856314),
        "node_pressure_cpu_waiting_ratio": pytest.approx(0.015),
        "node_pressure_io_waiting_seconds_total": pytest.approx(3.751449),
        "node_pressure_io_waiting_ratio": pytest.approx(0.0005),
        "node_pressure_io_stalled_seconds_total": pytest.approx(3.44245),
        "node_pressure_io_stalled_ratio": pytest.approx(0.25),
    }


def test_pressure_absent_and_garbled(tmp_path: Path) -> None:
    assert PressureCollector(str(tmp_path)).collect() == []
    put(tmp_path, "pressure/memory", "some avg10=x total=12\n\ngarbage\n")
    values = as_dict(PressureCollector(str(tmp_path)).collect())
    assert values == {
        "node_pressure_memory_waiting_seconds_total": pytest.approx(12e-6),
        "node_pressure_memory_waiting_ratio": None,
    }


PSI_IO = ("some avg10=0.05 avg60=0.12 avg300=0.27 total=3751449\n"
          "full avg10=25.00 avg60=0.12 avg300=0.25 total=3442450\n")


@pytest.mark.parametrize("changed", [
    PSI_IO.replace("total=3751449", "total=x"),  # a value stops being a number
    PSI_IO.replace("avg10=25.00", "avg10=25.00.1"),
    PSI_IO.replace("total=3442450\n", "total=\n3442450"),  # a number leaves its place
    PSI_IO.replace("avg10=0.05 avg60", "avg10=0.0 5avg60"),
    PSI_IO.replace("avg300=0.27 ", "avg300=0.27 avg600=0.30 "),  # a field comes
    PSI_IO.replace("full", "some"),  # a kind changes
    PSI_IO + "some total=9 avg10=1\n",  # a line comes
    PSI_IO.replace("avg10=0.05 ", "avg10=0.05  "),
    PSI_IO.rstrip("\n"),
])
def test_pressure_layout_that_changes_between_reads(tmp_path: Path, changed: str) -> None:
    put(tmp_path, "pressure/io", PSI_IO)
    pressure = PressureCollector(str(tmp_path))
    pressure.collect()
    put(tmp_path, "pressure/io", PSI_IO.replace("total=3751449", "total=3751450"))
    assert as_dict(pressure.collect())["node_pressure_io_waiting_seconds_total"] == pytest.approx(3.75145)
    put(tmp_path, "pressure/io", changed)
    assert pressure.collect() == PressureCollector(str(tmp_path)).collect()
    put(tmp_path, "pressure/io", PSI_IO)
    assert pressure.collect() == PressureCollector(str(tmp_path)).collect()


def test_pressure_number_that_moves_in_a_file_not_laid_out_as_usual(tmp_path: Path) -> None:
    odd = "some avg10=0.05 avg60=0.12 avg300=0.27 total=3751449  \n"  # two spaces at the end
    put(tmp_path, "pressure/memory", odd)
    pressure = PressureCollector(str(tmp_path))
    pressure.collect()
    pressure.collect()
    put(tmp_path, "pressure/memory", odd.replace("=3751449  ", "= 3751449 "))  # the same bytes but digits
    values = as_dict(pressure.collect())
    assert values["node_pressure_memory_waiting_seconds_total"] is None
    assert pressure.collect() == PressureCollector(str(tmp_path)).collect()
    put(tmp_path, "pressure/memory", odd.replace("  \n", "\t\n"))  # a tab at the end
    pressure.collect()
    pressure.collect()
    put(tmp_path, "pressure/memory", odd.replace("=3751449  \n", "=\t3751449\n"))
    assert pressure.collect() == PressureCollector(str(tmp_path)).collect()


def test_filefd(tmp_path: Path) -> None:
    put(tmp_path, "sys/fs/file-nr", "837\t0\t2466183\n")
    assert as_dict(FileFdCollector(str(tmp_path)).collect()) == {
        "node_filefd_allocated": 837, "node_filefd_maximum": 2466183,
    }
    assert as_dict(FileFdCollector(str(tmp_path / "nope")).collect()) == {
        "node_filefd_allocated": None, "node_filefd_maximum": None,
    }


@linux_only
def test_real_cpu() -> None:
    cpu = CpuCollector(per_cpu=True)
    cpu.collect()
    values = check_real(cpu)
    ratios = [v for k, v in values.items() if k.startswith("node_cpu_ratio{mode=")]
    assert len(ratios) == 8
    if all(r is not None for r in ratios):  # None only if no tick passed
        assert sum(ratios) == pytest.approx(1.0)
    assert values["node_context_switches_total"] > 0
    assert len([k for k in values if k.startswith('node_cpu_ratio{cpu="')]) == 8 * os.cpu_count()


@linux_only
def test_real_load_uptime_filefd() -> None:
    assert set(check_real(LoadCollector())) == {"node_load1", "node_load5", "node_load15"}
    assert check_real(UptimeCollector())["node_uptime_seconds"] > 0
    values = check_real(FileFdCollector())
    assert 0 < values["node_filefd_allocated"] <= values["node_filefd_maximum"]


@linux_only
def test_real_memory() -> None:
    values = check_real(MemoryCollector())
    assert values["node_memory_total_bytes"] > 0
    assert 0 < values["node_memory_available_bytes"] <= values["node_memory_total_bytes"]
    assert values["node_memory_page_faults_total"] > 0
    assert len(values) >= 30


@linux_only
def test_real_swap() -> None:
    values = check_real(SwapCollector())
    assert values["node_swap_used_bytes"] <= values["node_swap_size_bytes"]


@linux_only
@pytest.mark.skipif(not os.path.exists("/proc/pressure/cpu"), reason="kernel without PSI")
def test_real_pressure() -> None:
    values = check_real(PressureCollector())
    assert "node_pressure_cpu_waiting_seconds_total" in values
    assert "node_pressure_cpu_stalled_seconds_total" not in values


def test_pressure_missing_file_is_retried_only_after_a_while(tmp_path: Path) -> None:
    from test_collectors_io import Clock

    clock = Clock()
    pressure = PressureCollector(str(tmp_path), clock=clock)
    assert pressure.collect() == []
    put(tmp_path, "pressure/irq", "full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")
    clock.now += 299.0
    assert pressure.collect() == []
    clock.now += 1.0
    assert as_dict(pressure.collect())["node_pressure_irq_stalled_seconds_total"] == pytest.approx(5e-6)


def test_memory_keys_that_move_between_reads(tmp_path: Path) -> None:
    put(tmp_path, "meminfo", MEMINFO)
    put(tmp_path, "vmstat", VMSTAT)
    memory = MemoryCollector(str(tmp_path), page_size=4096)
    memory.collect()
    # A field appears before the others (as after a kernel upgrade under a live
    # container), then a value stops being a number: positions must be relearned.
    put(tmp_path, "vmstat", "nr_new_thing 1\n" + VMSTAT.replace("pgfault 1000", "pgfault 2000"))
    put(tmp_path, "meminfo", "Zswap: 0 kB\n" + MEMINFO.replace("MemTotal:       1000000", "MemTotal: 2000000"))
    values = as_dict(memory.collect())
    assert values["node_memory_page_faults_total"] == 2000
    assert values["node_memory_oom_kills_total"] == 2
    assert values["node_memory_total_bytes"] == 2000000 * 1024
    put(tmp_path, "vmstat", VMSTAT.replace("pgfault 1000", "pgfault lots"))
    values = as_dict(memory.collect())
    assert "node_memory_page_faults_total" not in values
    assert values["node_memory_major_page_faults_total"] == 7
    put(tmp_path, "vmstat", VMSTAT)
    assert as_dict(memory.collect())["node_memory_page_faults_total"] == 1000
