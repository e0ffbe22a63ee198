"""Parsing of the per-device collectors (diskio, network, netstat, filesystem,
temperature) against fake sources, and one sanity run of each on this machine."""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from clumon.agent.collectors.diskio import DiskIoCollector
from clumon.agent.collectors.filesystem import FilesystemCollector, list_mounts
from clumon.agent.collectors.netstat import NetstatCollector
from clumon.agent.collectors.network import NetworkCollector
from clumon.agent.collectors.temperature import TemperatureCollector
from test_collectors_system import as_dict, check_real, put

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


DISKSTATS = """   7       0 loop0 9 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 100 10 2000 300 50 5 1000 400 2 1500 2500 0 0 0 0 0 0
 254       1 vda1 90 10 1900 290 50 5 1000 400 0 1400 2400
   8       0 sda 1 2 3 4 5 6 7 8 0 9 10
 259       0 nvme0n1 1 2 3 4 5 6 7 8 0 9 10
 259       1 nvme0n1p1 1 2 3 4 5 6 7 8 0 9 10
 253       0 dm-0 1 2 3 4 5 6 7 8 0 9 10
 short line
"""


def test_diskio_counters_and_device_filter(tmp_path: Path) -> None:
    put(tmp_path, "diskstats", DISKSTATS)
    values = as_dict(DiskIoCollector(str(tmp_path), clock=Clock()).collect())
    devices = {k.split('device="')[1].split('"')[0] for k in values}
    assert devices == {"vda", "sda", "nvme0n1", "dm-0"}  # no loop, no partitions
    assert values['node_disk_reads_completed_total{device="vda"}'] == 100
    assert values['node_disk_read_bytes_total{device="vda"}'] == 2000 * 512
    assert values['node_disk_read_time_seconds_total{device="vda"}'] == pytest.approx(0.3)
    assert values['node_disk_written_bytes_total{device="vda"}'] == 1000 * 512
    assert values['node_disk_io_now{device="vda"}'] == 2
    assert values['node_disk_io_time_seconds_total{device="vda"}'] == pytest.approx(1.5)
    assert values['node_disk_io_time_weighted_seconds_total{device="vda"}'] == pytest.approx(2.5)
    assert values['node_disk_busy_ratio{device="vda"}'] is None  # no interval yet
    assert len(values) == 4 * 12


def test_diskio_busy_ratio(tmp_path: Path) -> None:
    clock = Clock()
    put(tmp_path, "diskstats", DISKSTATS)
    disk = DiskIoCollector(str(tmp_path), clock=clock)
    disk.collect()
    clock.now += 2.0
    put(tmp_path, "diskstats", DISKSTATS.replace("2 1500 2500", "2 2000 2500").replace("0 9 10", "0 5009 10"))
    values = as_dict(disk.collect())
    assert values['node_disk_busy_ratio{device="vda"}'] == pytest.approx(0.25)  # 500 ms of 2 s
    assert values['node_disk_busy_ratio{device="sda"}'] == 1.0  # clamped: 5 s busy in 2 s


def test_diskio_missing_file(tmp_path: Path) -> None:
    assert DiskIoCollector(str(tmp_path)).collect() == []


def _without_busy(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v for k, v in values.items() if not k.startswith("node_disk_busy_ratio")}


@pytest.mark.parametrize("changed", [
    DISKSTATS + " 259       2 nvme1n1 1 2 3 4 5 6 7 8 0 9 10\n",  # a device comes
    DISKSTATS.replace(" 253       0 dm-0 1 2 3 4 5 6 7 8 0 9 10\n", ""),  # one goes
    DISKSTATS.replace("loop0", "sdb"),  # a device left out is replaced by one kept
    DISKSTATS.replace("nvme0n1p1", "nvme0n2"),  # as is a partition
    DISKSTATS.replace("vda 100 10", "vda 100 lots"),  # a counter stops being a number
    DISKSTATS.replace("vda 100 10", "vda 100 1.5"),
    DISKSTATS.replace(" short line", " short line 1 2 3 4 5 6 7 8 9 10 11 12"),  # a short line grows
    DISKSTATS.replace("sda 1 2 3 4 5 6 7 8 0 9 10", "sda 1 2 3 4 5 6 7 8 0 9"),  # one shrinks
    DISKSTATS.replace("sda 1 2 3", "sda 1\n2 3"),  # a line splits
])
def test_diskio_devices_that_change_between_reads(tmp_path: Path, changed: str) -> None:
    clock = Clock()
    put(tmp_path, "diskstats", DISKSTATS)
    disk = DiskIoCollector(str(tmp_path), clock=clock)
    disk.collect()
    clock.now += 1.0
    put(tmp_path, "diskstats", DISKSTATS.replace("2 1500 2500", "2 1600 2500"))
    assert as_dict(disk.collect())['node_disk_busy_ratio{device="vda"}'] == pytest.approx(0.1)
    clock.now += 2.0
    # 500 ms more of vda's io_ms in 2 s, where vda's line still gives values
    put(tmp_path, "diskstats", changed.replace("2 1500 2500", "2 2100 2500"))
    values = as_dict(disk.collect())
    fresh = as_dict(DiskIoCollector(str(tmp_path), clock=clock).collect())
    assert list(values) == list(fresh)
    assert _without_busy(values) == _without_busy(fresh)
    if 'node_disk_busy_ratio{device="vda"}' in values:
        assert values['node_disk_busy_ratio{device="vda"}'] == pytest.approx(0.25)
    if 'node_disk_busy_ratio{device="sda"}' in values:
        assert values['node_disk_busy_ratio{device="sda"}'] == 0
    clock.now += 1.0
    put(tmp_path, "diskstats", DISKSTATS)
    values = as_dict(disk.collect())
    assert _without_busy(values) == _without_busy(as_dict(DiskIoCollector(str(tmp_path), clock=clock).collect()))
    assert values['node_disk_busy_ratio{device="vda"}'] is None  # its io_ms went backwards


def test_diskio_busy_ratio_when_the_clock_stands_or_a_counter_steps_back(tmp_path: Path) -> None:
    clock = Clock()
    put(tmp_path, "diskstats", DISKSTATS)
    disk = DiskIoCollector(str(tmp_path), clock=clock)
    disk.collect()
    disk.collect()  # by the learnt layout from here on
    put(tmp_path, "diskstats", DISKSTATS.replace("2 1500 2500", "2 1600 2500"))
    assert as_dict(disk.collect())['node_disk_busy_ratio{device="vda"}'] is None  # no time passed
    clock.now += 1.0
    put(tmp_path, "diskstats", DISKSTATS.replace("2 1500 2500", "2 1400 2500").replace("0 9 10", "0 509 10"))
    values = as_dict(disk.collect())
    assert values['node_disk_busy_ratio{device="vda"}'] is None  # stepped back
    assert values['node_disk_busy_ratio{device="sda"}'] == pytest.approx(0.5)


NETDEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   95198    1472    0    0    0     0          0         0    95198    1472    0    0    0     0       0          0
  eth0:58732736    1605    1    2    0     0          0         0    98768     987    3    4    0     0       0          0
  ib0: 10 20 0 0 0 0 0 0 30 40 0 0 0 0 0 0
veth12ab: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0
  bad0: 1 2
"""


def test_network(tmp_path: Path) -> None:
    put(tmp_path, "net/dev", NETDEV)
    values = as_dict(NetworkCollector(str(tmp_path)).collect())
    assert values['node_network_receive_bytes_total{device="eth0"}'] == 58732736
    assert values['node_network_receive_packets_total{device="eth0"}'] == 1605
    assert values['node_network_receive_errs_total{device="eth0"}'] == 1
    assert values['node_network_receive_drop_total{device="eth0"}'] == 2
    assert values['node_network_transmit_bytes_total{device="eth0"}'] == 98768
    assert values['node_network_transmit_packets_total{device="eth0"}'] == 987
    assert values['node_network_transmit_errs_total{device="eth0"}'] == 3
    assert values['node_network_transmit_drop_total{device="eth0"}'] == 4
    assert values['node_network_transmit_packets_total{device="ib0"}'] == 40
    assert len(values) == 16  # lo, veth* and the truncated line are left out
    with_lo = as_dict(NetworkCollector(str(tmp_path), exclude=r"^$").collect())
    assert with_lo['node_network_receive_bytes_total{device="lo"}'] == 95198
    assert NetworkCollector(str(tmp_path / "nope")).collect() == []


NETDEV_SPACED = NETDEV.replace("eth0:58732736", "eth0: 58732736")  # as kernels since 2.6 print it


@pytest.mark.parametrize("changed", [
    NETDEV_SPACED + "  ib1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",  # an interface comes
    NETDEV_SPACED.replace("  ib0: 10 20 0 0 0 0 0 0 30 40 0 0 0 0 0 0\n", ""),  # one goes
    NETDEV_SPACED.replace("veth12ab:", "eth1:"),  # an excluded one is replaced by a kept one
    NETDEV_SPACED.replace("ib0: 10 20", "ib0: 10 lots"),  # a value stops being a number
    NETDEV_SPACED.replace("bad0: 1 2", "bad0: 1 2 3 4 5 6 7 8 9 10 11 12"),  # a short line grows
    NETDEV_SPACED.replace("ib0: 10 20", "ib0: 10\n20"),  # a line splits
    NETDEV,  # the first number glued to the colon (old kernels)
])
def test_network_interfaces_that_change_between_reads(tmp_path: Path, changed: str) -> None:
    put(tmp_path, "net/dev", NETDEV_SPACED)
    network = NetworkCollector(str(tmp_path))
    network.collect()
    put(tmp_path, "net/dev", NETDEV_SPACED.replace("ib0: 10 20", "ib0: 11 21"))
    assert as_dict(network.collect())['node_network_receive_packets_total{device="ib0"}'] == 21
    put(tmp_path, "net/dev", changed)
    assert network.collect() == NetworkCollector(str(tmp_path)).collect()
    put(tmp_path, "net/dev", NETDEV_SPACED)
    assert network.collect() == NetworkCollector(str(tmp_path)).collect()
    put(tmp_path, "net/dev", changed)
    assert network.collect() == NetworkCollector(str(tmp_path)).collect()
    put(tmp_path, "net/dev", changed.replace("1605", "1606"))  # a second read of that layout
    assert network.collect() == NetworkCollector(str(tmp_path)).collect()


SNMP = """Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors InDiscards InDelivers OutRequests OutDiscards ReasmFails
Ip: 2 64 50504 1 0 2 50500 48984 3 4
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 358 321 20 7 2 46895 46251 34 5 37 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
Udp: 40 1 2 41 3 4 0
UdpLite: InDatagrams NoPorts
UdpLite: 0 0
"""
SOCKSTAT = """sockets: used 29
TCP: inuse 11 orphan 1 tw 2 alloc 14 mem 93
UDP: inuse 3 mem 0
"""


def test_netstat(tmp_path: Path) -> None:
    put(tmp_path, "net/snmp", SNMP)
    put(tmp_path, "net/sockstat", SOCKSTAT)
    values = as_dict(NetstatCollector(str(tmp_path), page_size=4096).collect())
    assert values["node_tcp_retransmitted_segments_total"] == 34
    assert values["node_tcp_connections_established"] == 2
    assert values["node_tcp_receive_errors_total"] == 5
    assert values["node_udp_receive_buffer_errors_total"] == 3
    assert values["node_udp_no_port_total"] == 1
    assert values["node_ip_reassembly_failures_total"] == 4
    assert values["node_ip_receive_discards_total"] == 2
    assert values["node_sockets_used"] == 29
    assert values["node_tcp_sockets_time_wait"] == 2
    assert values["node_tcp_sockets_orphan"] == 1
    assert values["node_tcp_memory_bytes"] == 93 * 4096
    assert values["node_udp_sockets_inuse"] == 3
    assert not any("udplite" in k.lower() or "rto" in k for k in values)


def test_netstat_mismatched_header_is_skipped(tmp_path: Path) -> None:
    put(tmp_path, "net/snmp", "Tcp: ActiveOpens PassiveOpens\nTcp: 5\n")
    assert NetstatCollector(str(tmp_path)).collect() == []


@pytest.mark.parametrize("snmp, sockstat", [
    (SNMP.replace("ActiveOpens PassiveOpens", "ActiveOpens NewColumn PassiveOpens").replace("358 321", "358 9 321"),
     SOCKSTAT),  # a header changes: the columns after it move
    (SNMP.replace("ActiveOpens PassiveOpens", "PassiveOpens ActiveOpens"), SOCKSTAT),  # columns swap, same count
    (SNMP.replace("46251 34", "46251 lots"), SOCKSTAT.replace("tw 2", "tw x")),  # values stop being numbers
    (SNMP.replace("Udp: 40 1 2 41 3 4 0", "Udp: 40 1 2 41 3 4"), SOCKSTAT),  # a value line too short
    (SNMP.replace("UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n", ""), SOCKSTAT + "RAW: inuse 0\n"),  # lines go, come
    ("IcmpMsg: InType3\nIcmpMsg: 1\n" + SNMP, SOCKSTAT.replace("orphan 1 ", "")),  # pairs shift, a key goes
    (SNMP.replace("Tcp: 1 200", "Tcp: 1\n200"), SOCKSTAT.replace("inuse 11 orphan", "inuse 11\norphan")),  # lines split
    (SNMP.replace("Tcp: 1 200", "Tcp:  1 200"), SOCKSTAT.replace("TCP: inuse", "TCP:\tinuse")),
])
def test_netstat_layout_that_changes_between_reads(tmp_path: Path, snmp: str, sockstat: str) -> None:
    put(tmp_path, "net/snmp", SNMP)
    put(tmp_path, "net/sockstat", SOCKSTAT)
    netstat = NetstatCollector(str(tmp_path), page_size=4096)
    netstat.collect()
    put(tmp_path, "net/snmp", SNMP.replace("46251 34", "46252 35"))
    assert as_dict(netstat.collect())["node_tcp_retransmitted_segments_total"] == 35
    put(tmp_path, "net/snmp", snmp)
    put(tmp_path, "net/sockstat", sockstat)
    fresh = NetstatCollector(str(tmp_path), page_size=4096).collect()
    assert netstat.collect() == fresh
    put(tmp_path, "net/snmp", SNMP)
    put(tmp_path, "net/sockstat", SOCKSTAT)
    assert netstat.collect() == NetstatCollector(str(tmp_path), page_size=4096).collect()


def statvfs_result(blocks=1000, bfree=400, bavail=300, files=100, ffree=60, flag=0, frsize=4096):
    return os.statvfs_result((4096, frsize, blocks, bfree, bavail, files, ffree, ffree, flag, 255))


MOUNTS = """proc /proc proc rw 0 0
sysfs /sys sysfs rw 0 0
/dev/sda1 / ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
devtmpfs /dev devtmpfs rw 0 0
tmpfs /run/user/1000 tmpfs rw 0 0
/dev/sda1 /srv/bind ext4 rw 0 0
/dev/sdb1 /scratch\\040space xfs ro 0 0
nfs:/home /home nfs4 rw 0 0
lustre@o2ib:/fs /lustre lustre rw 0 0
cvmfs2 /cvmfs/sft.cern.ch fuse rw 0 0
overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
"""


def test_list_mounts_filters_pseudo_remote_and_binds(tmp_path: Path) -> None:
    put(tmp_path, "mounts", MOUNTS)
    points = [m.point for m in list_mounts(str(tmp_path))]
    assert points == ["/", "/dev/shm", "/scratch space"]
    with_remote = [m.point for m in list_mounts(str(tmp_path), remote=True)]
    assert with_remote == ["/", "/dev/shm", "/scratch space", "/home", "/lustre", "/cvmfs/sft.cern.ch"]


def test_filesystem_values(tmp_path: Path) -> None:
    put(tmp_path, "mounts", MOUNTS)
    results = {"/": statvfs_result(), "/dev/shm": statvfs_result(bfree=1000, bavail=1000),
               "/scratch space": statvfs_result(flag=os.ST_RDONLY)}
    fs = FilesystemCollector(str(tmp_path), statvfs=results.__getitem__)
    values = as_dict(fs.collect())
    assert values['node_filesystem_size_bytes{mount="/"}'] == 1000 * 4096
    assert values['node_filesystem_avail_bytes{mount="/"}'] == 300 * 4096
    assert values['node_filesystem_used_bytes{mount="/"}'] == 600 * 4096
    assert values['node_disk_used_ratio{mount="/"}'] == pytest.approx(600 / 900)  # df's Use%
    assert values['node_filesystem_files{mount="/"}'] == 100
    assert values['node_filesystem_files_free{mount="/"}'] == 60
    assert values['node_filesystem_readonly{mount="/"}'] == 0
    assert values['node_filesystem_readonly{mount="/scratch space"}'] == 1
    assert values['node_disk_used_ratio{mount="/dev/shm"}'] == 0
    assert len(values) == 3 * 7


def test_filesystem_refreshes_mount_list_rarely_and_survives_errors(tmp_path: Path) -> None:
    clock = Clock()
    put(tmp_path, "mounts", "/dev/sda1 / ext4 rw 0 0\n")

    def statvfs(point: str) -> os.statvfs_result:
        if point == "/gone":
            raise FileNotFoundError(point)
        return statvfs_result()

    fs = FilesystemCollector(str(tmp_path), refresh=60.0, statvfs=statvfs, clock=clock)
    assert len(fs.collect()) == 7
    put(tmp_path, "mounts", "/dev/sda1 / ext4 rw 0 0\n/dev/sdc /gone ext4 rw 0 0\n")
    clock.now += 59.0
    assert len(fs.collect()) == 7  # list not re-read yet
    clock.now += 1.0
    values = as_dict(fs.collect())
    assert len(values) == 14
    assert values['node_filesystem_size_bytes{mount="/gone"}'] is None
    assert FilesystemCollector(str(tmp_path / "nope")).collect() == []


Temp = namedtuple("Temp", "label current high critical")


def test_temperature() -> None:
    sensors = {
        "coretemp": [Temp("Package id 0", 45.0, 80, 100), Temp("Core 0", 40.0, 80, 100),
                     Temp("Core 0", 41.0, 80, 100)],
        "nvme": [Temp("", 33.9, None, None)],
    }
    values = as_dict(TemperatureCollector(sensors=lambda: sensors).collect())
    assert values == {
        'node_temperature_celsius{chip="coretemp",sensor="Package id 0"}': 45.0,
        'node_temperature_celsius{chip="coretemp",sensor="Core 0"}': 40.0,
        'node_temperature_celsius{chip="coretemp",sensor="Core 0#2"}': 41.0,
        'node_temperature_celsius{chip="nvme",sensor="0"}': 33.9,
    }


def test_temperature_errors_yield_nothing() -> None:
    def broken() -> dict:
        raise OSError("sysfs went away")

    assert TemperatureCollector(sensors=broken).collect() == []
    assert TemperatureCollector(sensors=dict).collect() == []


@linux_only
def test_real_diskio() -> None:
    disk = DiskIoCollector()
    disk.collect()
    values = check_real(disk)
    assert not any('device="loop' in k for k in values)


@linux_only
def test_real_network() -> None:
    values = check_real(NetworkCollector())
    assert values, "a Linux host has at least one non-loopback interface"
    assert not any('device="lo"' in k for k in values)


@linux_only
def test_real_netstat() -> None:
    values = check_real(NetstatCollector())
    assert values["node_tcp_sent_segments_total"] >= 0
    assert "node_sockets_used" in values


@linux_only
def test_real_filesystem() -> None:
    values = check_real(FilesystemCollector())
    assert values['node_filesystem_size_bytes{mount="/"}'] > 0
    assert not any('mount="/proc' in k or 'mount="/sys' in k for k in values)


def test_temperature_from_a_fake_sysfs(tmp_path) -> None:
    from clumon.agent.collectors.temperature import SysfsSensors

    put(tmp_path, "class/hwmon/hwmon0/name", "coretemp\n")
    put(tmp_path, "class/hwmon/hwmon0/temp1_input", "45000\n")
    put(tmp_path, "class/hwmon/hwmon0/temp1_label", "Package id 0\n")
    put(tmp_path, "class/hwmon/hwmon0/temp2_input", "40500\n")
    put(tmp_path, "class/hwmon/hwmon1/device/name", "nvme\n")
    put(tmp_path, "class/hwmon/hwmon1/device/temp1_input", "33900\n")
    put(tmp_path, "class/thermal/thermal_zone0/type", "acpitz\n")  # hwmon has sensors: not used
    put(tmp_path, "class/thermal/thermal_zone0/temp", "20000\n")
    now = [0.0]
    sensors = SysfsSensors(str(tmp_path), clock=lambda: now[0])
    values = as_dict(TemperatureCollector(sensors=sensors).collect())
    assert values == {
        'node_temperature_celsius{chip="coretemp",sensor="Package id 0"}': 45.0,
        'node_temperature_celsius{chip="coretemp",sensor="1"}': 40.5,
        'node_temperature_celsius{chip="nvme",sensor="0"}': 33.9,
    }
    put(tmp_path, "class/hwmon/hwmon0/temp1_input", "46000\n")
    put(tmp_path, "class/hwmon/hwmon0/temp3_input", "50000\n")  # found at the next look only
    assert sensors()["coretemp"][0].current == 46.0 and len(sensors()["coretemp"]) == 2
    now[0] += 600.0
    assert len(sensors()["coretemp"]) == 3


def test_temperature_from_thermal_zones_when_hwmon_has_none(tmp_path) -> None:
    from clumon.agent.collectors.temperature import SysfsSensors

    put(tmp_path, "class/thermal/thermal_zone0/type", "acpitz\n")
    put(tmp_path, "class/thermal/thermal_zone0/temp", "27800\n")
    assert as_dict(TemperatureCollector(sensors=SysfsSensors(str(tmp_path))).collect()) == {
        'node_temperature_celsius{chip="acpitz",sensor="0"}': 27.8}
    assert TemperatureCollector(sensors=SysfsSensors(str(tmp_path / "none"))).collect() == []


def test_real_temperature() -> None:
    check_real(TemperatureCollector())  # most VMs have no sensors: an empty list is fine
