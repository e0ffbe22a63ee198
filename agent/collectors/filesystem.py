"""Filesystem space and inodes per mount point (statvfs on /proc/mounts entries)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from .base import Sample, read_bytes, series

#: Filesystems with no space of their own to run out of (node_exporter's list,
#: plus rootfs, ramfs and efivarfs).
PSEUDO_FSTYPES = frozenset(
    "autofs binfmt_misc bpf cgroup cgroup2 configfs debugfs devpts devtmpfs efivarfs "
    "erofs fusectl hugetlbfs iso9660 mqueue nsfs overlay proc procfs pstore ramfs "
    "rootfs rpc_pipefs securityfs selinuxfs squashfs sysfs tracefs".split()
)
#: Network and cluster filesystems. statvfs on them goes to a server, can hang
#: for minutes when it is away, and 2,000 nodes asking a Lustre MDS every 30 s is
#: the storage team's job, not every node's; so they are off unless asked for.
REMOTE_FSTYPES = frozenset(
    "nfs nfs4 cifs smb3 smbfs lustre gpfs beegfs ceph glusterfs 9p afs panfs "
    "pvfs2 orangefs".split()
)
#: Mount points below these hold per-user or per-container mounts that come and
#: go (each a new dictionary version) or kernel interfaces. /dev/shm stays: MPI
#: shared memory filling it is a classic HPC failure.
EXCLUDED_PREFIXES = (
    "/proc", "/sys", "/run/user/", "/run/credentials/", "/run/containerd/",
    "/var/lib/docker/", "/var/lib/containers/", "/var/lib/kubelet/", "/snap/",
)
_KEPT_UNDER_DEV = ("/dev/shm",)

_METRICS = (
    "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_used_bytes",
    "node_disk_used_ratio",
    "node_filesystem_files",
    "node_filesystem_files_free",
    "node_filesystem_readonly",
)


@dataclass(frozen=True, slots=True)
class Mount:
    """One mounted filesystem as /proc/mounts lists it."""

    device: str
    point: str
    fstype: str


class FilesystemCollector:
    """Space and inodes per mounted local filesystem, labelled by mount point.

    Per mount: ``node_filesystem_size_bytes``, ``_avail_bytes`` (free to
    unprivileged users), ``_used_bytes``, ``node_disk_used_ratio`` (used over
    used + avail, as ``df`` shows it), ``node_filesystem_files``, ``_files_free``
    and ``node_filesystem_readonly`` (1 when mounted read-only, e.g. after ext4
    remounted itself on errors). The mount list is re-read every ``refresh``
    seconds only: parsing it is most of the cost, and mounts rarely change.
    """

    name = "filesystem"
    default_interval = 30.0

    def __init__(
        self,
        procfs: str = "/proc",
        remote: bool = False,
        refresh: float = 300.0,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._procfs = procfs
        self._remote = remote
        self._refresh = refresh
        self._statvfs = statvfs
        self._clock = clock
        self._mounts: list[tuple[Mount, tuple[str, ...]]] = []
        self._listed_at: float | None = None

    def mounts(self) -> list[Mount]:
        """The mounts currently watched (re-read if the list is stale)."""
        now = self._clock()
        if self._listed_at is None or now - self._listed_at >= self._refresh:
            found = list_mounts(self._procfs, self._remote)
            self._mounts = [(m, tuple(series(x, mount=m.point) for x in _METRICS)) for m in found]
            self._listed_at = now
        return [m for m, _ in self._mounts]

    def collect(self) -> list[Sample]:
        """statvfs each watched mount; a mount that fails yields ``None`` values
        until the next refresh drops it."""
        self.mounts()
        out: list[Sample] = []
        for mount, names in self._mounts:
            out.extend(Sample(n, v) for n, v in zip(names, self._usage(mount.point)))
        return out

    def _usage(self, point: str) -> tuple[float | None, ...]:
        try:
            st = self._statvfs(point)
        except OSError:
            return (None,) * len(_METRICS)
        size = st.f_blocks * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        used = size - st.f_bfree * st.f_frsize
        ratio = used / (used + avail) if used + avail > 0 else None
        readonly = 1.0 if st.f_flag & os.ST_RDONLY else 0.0
        return (size, avail, used, ratio, st.f_files, st.f_ffree, readonly)


def list_mounts(procfs: str = "/proc", remote: bool = False) -> list[Mount]:
    """Mounted filesystems worth watching, one per mount point and per block
    device (a bind mount of the same device repeats the same numbers)."""
    raw = read_bytes(f"{procfs}/mounts")
    if not raw:
        return []
    by_point: dict[str, Mount] = {}
    devices: set[str] = set()
    for line in raw.split(b"\n"):
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = (_unescape(f) for f in fields[:3])
        if not _wanted(point, fstype, remote) or point in by_point:
            continue
        if device.startswith("/dev/"):
            if device in devices:
                continue
            devices.add(device)
        by_point[point] = Mount(device, point, fstype)
    return list(by_point.values())


def _wanted(point: str, fstype: str, remote: bool) -> bool:
    if fstype in PSEUDO_FSTYPES:
        return False
    if not remote and (fstype in REMOTE_FSTYPES or fstype.startswith("fuse")):
        return False
    if point.startswith("/dev") and not point.startswith(_KEPT_UNDER_DEV):
        return False
    return not (point + "/").startswith(EXCLUDED_PREFIXES)


def _unescape(field: bytes) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \ooo octal.
    text = field.decode(errors="replace")
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
