"""Network interface counters from /proc/net/dev."""

from __future__ import annotations

import re

from .base import ColumnCollector, Layout, ProcFile, series

#: Loopback and the per-container/VM interfaces that come and go with jobs:
#: each would add series and a new dictionary version every time it appears.
DEFAULT_EXCLUDE = r"^(lo|veth.*|cali.*|vnet\d+|tap.*)$"

#: Column of the counters after "iface:" -> metric.
_COLUMNS = (
    (0, "node_network_receive_bytes_total"),
    (1, "node_network_receive_packets_total"),
    (2, "node_network_receive_errs_total"),
    (3, "node_network_receive_drop_total"),
    (8, "node_network_transmit_bytes_total"),
    (9, "node_network_transmit_packets_total"),
    (10, "node_network_transmit_errs_total"),
    (11, "node_network_transmit_drop_total"),
)

_COLS = tuple(col for col, _ in _COLUMNS)

_NAME_CACHE_MAX = 4096


class NetworkCollector(ColumnCollector):
    """Per-interface bytes, packets, errors and drops received and transmitted,
    as raw counters: ``node_network_receive_bytes_total{device="eth0"}`` ...
    """

    name = "network"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", exclude: str = DEFAULT_EXCLUDE) -> None:
        self._file = ProcFile(f"{procfs}/net/dev")
        self._exclude = re.compile(exclude)
        self._names: dict[bytes, tuple[str, ...] | None] = {}
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/net/dev once; no samples if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        names: list[str] = []
        values: list[float | None] = []
        # Two header lines, then "  eth0: 123 ..."; old kernels glue the first
        # number to the colon, so split on the colon, not on whitespace.
        for line in raw.split(b"\n")[2:]:
            iface, sep, rest = line.partition(b":")
            if not sep:
                continue
            metrics = self._names_of(iface.strip())
            if metrics is None:
                continue
            fields = rest.split()
            try:
                # All or nothing: a short line must add nothing, not half.
                got = [float(fields[col]) for col in _COLS]
            except (IndexError, ValueError):
                continue
            names += metrics
            values += got
        return self._layout(names), values

    def _names_of(self, iface: bytes) -> tuple[str, ...] | None:
        if iface in self._names:
            return self._names[iface]
        if len(self._names) > _NAME_CACHE_MAX:  # names that churn must not leak memory
            self._names.clear()
        name = iface.decode(errors="replace")
        entry = None
        if not self._exclude.search(name):
            entry = tuple(series(m, device=name) for _, m in _COLUMNS)
        self._names[iface] = entry
        return entry
