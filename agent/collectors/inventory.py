"""Static facts about a node, sent once in HELLO (never as series)."""

from __future__ import annotations

import os
import platform

from clumon.proto import __version__

from .base import read_bytes


def inventory(procfs: str = "/proc") -> dict:
    """Static facts for HELLO: host, cores, memory, kernel, boot time, versions.

    Every value is a str, int or float (msgpack-serialisable); a fact that
    cannot be read is ``None`` rather than missing, so receivers see one shape.
    """
    uname = os.uname()
    return {
        "host": uname.nodename,
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(procfs),
        "memory_bytes": _mem_total(procfs),
        "kernel": uname.release,
        "arch": uname.machine,
        "boot_time": _boot_time(procfs),
        "os": _os_name(),
        "python": platform.python_version(),
        "clumon": __version__,
    }


def _mem_total(procfs: str) -> int | None:
    raw = read_bytes(f"{procfs}/meminfo") or b""
    for line in raw.splitlines():
        if line.startswith(b"MemTotal:"):
            try:
                return int(line.split()[1]) * 1024
            except (IndexError, ValueError):
                return None
    return None


def _boot_time(procfs: str) -> int | None:
    raw = read_bytes(f"{procfs}/stat") or b""
    for line in raw.splitlines():
        if line.startswith(b"btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _cpu_model(procfs: str) -> str | None:
    raw = read_bytes(f"{procfs}/cpuinfo") or b""
    for line in raw.splitlines():
        # x86 says "model name", aarch64 kernels often only "CPU part"/"Hardware".
        if line.startswith((b"model name", b"Hardware", b"cpu model")):
            return line.partition(b":")[2].strip().decode(errors="replace")
    return None


def _os_name() -> str | None:
    try:
        info = platform.freedesktop_os_release()
    except OSError:
        return None
    return info.get("PRETTY_NAME") or info.get("NAME")

