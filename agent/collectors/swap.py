"""Swap space from /proc/swaps (swap activity is in the memory source)."""

from __future__ import annotations

from .base import ColumnCollector, ProcFile


_NAMES = ("node_swap_size_bytes", "node_swap_used_bytes", "node_swap_free_bytes", "node_swap_used_ratio")


class SwapCollector(ColumnCollector):
    """``node_swap_size_bytes``, ``_used_bytes``, ``_free_bytes`` and
    ``node_swap_used_ratio`` summed over all swap areas.

    /proc/swaps is a few lines, far cheaper to parse than /proc/meminfo. With no
    swap configured the sizes are 0 and the ratio is ``None`` (undefined, not 0 %).
    """

    name = "swap"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc") -> None:
        self._file = ProcFile(f"{procfs}/swaps")

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/swaps; no samples if it is unreadable."""
        raw = self._file.read()
        if raw is None:
            return (), []
        size = used = 0
        # Header first; then "Filename Type Size Used Priority" in KiB. Spaces in
        # file names are escaped as \040, so split() keeps the columns.
        for line in raw.split(b"\n")[1:]:
            fields = line.split()
            if len(fields) >= 4:
                try:
                    size += int(fields[2])
                    used += int(fields[3])
                except ValueError:
                    continue
        return _NAMES, [size * 1024, used * 1024, (size - used) * 1024, used / size if size > 0 else None]
