"""Network interface counters from /proc/net/dev."""

from __future__ import annotations

import re

from .base import ColumnCollector, Layout, ProcFile, Shape, series, tokens_by_line

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

    The file's layout is learnt from a read taken line by line (``_DevPlan``);
    later reads check it and pick their values in a few C-level calls.
    """

    name = "network"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", exclude: str = DEFAULT_EXCLUDE) -> None:
        self._file = ProcFile(f"{procfs}/net/dev")
        self._exclude = re.compile(exclude)
        self._names: dict[bytes, tuple[str, ...] | None] = {}
        self._plan: _DevPlan | None = None
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read /proc/net/dev once; no samples if it is unreadable."""
        raw = self._file.read()
        if not raw:
            return (), []
        # Two header lines, then "  eth0: 123 ...".
        lines = raw.split(b"\n")[2:]
        plan = self._plan
        if plan is not None:
            got = plan.values(lines)
            if got is not None:
                return plan.names, got
        names: list[str] = []
        values: list[float | None] = []
        kept = self._by_lines(lines, names, values)
        series_names = self._layout(names)
        self._plan = _DevPlan.learn(lines, kept, series_names) if kept is not None else None
        return series_names, values

    def _by_lines(self, lines: list[bytes], names: list[str], values: list[float | None]) -> list[bool] | None:
        """Fill ``names`` and ``values`` line by line; returns which lines gave
        values, or ``None`` when a line that might have given some had a value
        that is not a number (it may be one next time: learn again then)."""
        kept: list[bool] = []
        numbers = True
        for line in lines:
            # Old kernels glue the first number to the colon: split on the colon,
            # not on whitespace.
            iface, sep, rest = line.partition(b":")
            metrics = self._names_of(iface.strip()) if sep else None
            got = None
            if metrics is not None:
                fields = rest.split()
                try:
                    # All or nothing: a short line must add nothing, not half.
                    got = [float(fields[col]) for col in _COLS]
                except IndexError:
                    pass
                except ValueError:
                    numbers = False
            kept.append(got is not None)
            if got is not None:
                names += metrics
                values += got
        return kept if numbers else None

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


class _DevPlan:
    """/proc/net/dev as learnt from one read: how many tokens each interface line
    has, its first token (``iface:``, a key of ``shape``) and where the wanted
    counters of the interfaces kept sit among the tokens."""

    __slots__ = ("names", "counts", "shape")

    def __init__(self, names: tuple[str, ...], counts: list[int], shape: Shape) -> None:
        self.names = names
        self.counts = counts
        self.shape = shape

    def values(self, lines: list[bytes]) -> list[float] | None:
        """The counters of a read cut into ``lines`` (headers left out); ``None``
        when an interface came or went, or a value is not a number."""
        tokens = tokens_by_line(lines, self.counts)
        return None if tokens is None else self.shape.floats(tokens)

    @classmethod
    def learn(cls, lines: list[bytes], kept: list[bool], names: tuple[str, ...]) -> _DevPlan | None:
        """The plan of a read cut into ``lines`` whose ``kept`` lines gave ``names``;
        ``None`` when a line does not start with ``iface:`` as a word of its own
        (the numbers glued to the colon by old kernels)."""
        keys: list[int] = []
        expect: list[bytes] = []
        positions: list[int] = []
        counts: list[int] = []
        n = 0
        for line, taken in zip(lines, kept):
            tokens = line.split()
            if tokens:
                # With the line's first colon ending its first word, that word
                # stands for the name and the split of the line-by-line read.
                if tokens[0].find(b":") != len(tokens[0]) - 1:
                    return None
                keys.append(n)
                expect.append(tokens[0])
            if taken:
                positions += [n + 1 + col for col in _COLS]
            counts.append(len(tokens))
            n += len(tokens)
        return cls(names, counts, Shape(n, keys, expect, positions))
