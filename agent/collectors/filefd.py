"""Open file handles from /proc/sys/fs/file-nr."""

from __future__ import annotations

from .base import ColumnCollector, ProcFile


_NAMES = ("node_filefd_allocated", "node_filefd_maximum")


class FileFdCollector(ColumnCollector):
    """``node_filefd_allocated`` (file handles in use node-wide) and
    ``node_filefd_maximum`` (fs.file-max): running out stops every job on the node.
    """

    name = "filefd"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc") -> None:
        self._file = ProcFile(f"{procfs}/sys/fs/file-nr")

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read file-nr ("allocated  unused  max"); ``None`` values if unreadable."""
        raw = self._file.read()
        fields = raw.split() if raw else []
        try:
            return _NAMES, [float(fields[0]), float(fields[2])]
        except (IndexError, ValueError):
            return _NAMES, [None, None]
