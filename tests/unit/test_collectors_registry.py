"""default_collectors, inventory, and the whole default set on this machine."""

from __future__ import annotations

import os
import sys
import time

import msgpack
import pytest

from clumon.agent.collectors import SOURCES, Collector, default_collectors, inventory
from test_collectors_system import STAT, check_real, put

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


def test_default_collectors_cover_every_source_once() -> None:
    collectors = default_collectors()
    assert [c.name for c in collectors] == list(SOURCES)
    assert {"cpu", "load", "memory", "swap", "filesystem", "diskio", "network",
            "processes", "uptime", "pressure", "filefd", "netstat", "temperature"} <= set(SOURCES)
    for c in collectors:
        assert isinstance(c, Collector)
        assert c.default_interval > 0


def test_include_and_per_cpu(tmp_path) -> None:
    put(tmp_path, "stat", STAT)
    collectors = default_collectors(str(tmp_path), per_cpu=True, include=["cpu", "load"])
    assert [c.name for c in collectors] == ["cpu", "load"]
    names = [s.name for s in collectors[0].collect()]
    assert 'node_cpu_ratio{cpu="1",mode="user"}' in names
    with pytest.raises(ValueError, match="bogus"):
        default_collectors(include=["cpu", "bogus"])


def test_collectors_never_raise_on_an_empty_procfs(tmp_path) -> None:
    # An empty directory has no files to read and no PID directories: nothing
    # may be invented except zero process counts (temperature reads sysfs).
    for c in default_collectors(str(tmp_path)):
        for sample in c.collect():
            if c.name == "processes" and sample.name.startswith("node_processes"):
                assert sample.value == 0, sample
            elif c.name != "temperature":
                assert sample.value is None, (c.name, sample)


def test_inventory_is_msgpack_serialisable() -> None:
    inv = inventory()
    assert msgpack.unpackb(msgpack.packb(inv)) == inv
    assert inv["host"] == os.uname().nodename
    assert inv["cores"] == os.cpu_count()
    assert inv["python"].count(".") == 2
    for key in ("memory_bytes", "kernel", "boot_time", "os", "clumon", "cpu_model", "arch"):
        assert key in inv


def test_inventory_version_is_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    assert inventory()["clumon"] == version("clumon")


def test_inventory_from_fake_procfs(tmp_path) -> None:
    put(tmp_path, "meminfo", "MemTotal:       1000 kB\n")
    put(tmp_path, "stat", STAT)
    put(tmp_path, "cpuinfo", "processor\t: 0\nmodel name\t: Test CPU @ 1GHz\n")
    inv = inventory(str(tmp_path))
    assert inv["memory_bytes"] == 1000 * 1024
    assert inv["boot_time"] == 1700000000
    assert inv["cpu_model"] == "Test CPU @ 1GHz"
    empty = inventory(str(tmp_path / "nope"))
    assert empty["memory_bytes"] is None and empty["boot_time"] is None


@linux_only
def test_real_default_set_is_complete_and_unique() -> None:
    collectors = default_collectors()
    for c in collectors:
        c.collect()
    time.sleep(0.2)
    names: list[str] = []
    per_second = 0
    for c in collectors:
        values = check_real(c)
        names.extend(values)
        if c.default_interval <= 1.0:
            per_second += len(values)
    assert len(names) == len(set(names)), "two sources produce the same series"
    # issue 3: an idle node collects at least ~150 values; most of them every second
    assert len(names) >= 150
    assert per_second >= 120
    assert inventory()["memory_bytes"] > 0


def test_sample_is_a_frozen_value() -> None:
    import dataclasses

    from clumon.agent.collectors import Sample

    s = Sample("node_load1", 0.5)
    assert (s.name, s.value) == ("node_load1", 0.5)
    assert s == Sample("node_load1", 0.5) and hash(s) == hash(Sample("node_load1", 0.5))
    assert s != Sample("node_load1", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.value = 1.0  # type: ignore[misc]
    assert dataclasses.replace(s, value=None) == Sample("node_load1", None)
    assert repr(s) == "Sample(name='node_load1', value=0.5)"
