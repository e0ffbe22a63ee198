"""TCP/UDP protocol counters from /proc/net/snmp and socket counts from
/proc/net/sockstat."""

from __future__ import annotations

import os
from operator import mul

from .base import ColumnCollector, Layout, ProcFile, Shape, tokens_by_line

#: (protocol line, column header) -> series. Retransmits, resets, discards,
#: reassembly failures and UDP buffer errors are what show a struggling
#: MPI/NFS/storage network on a node.
_SNMP = {
    (b"Ip:", b"InReceives"): "node_ip_received_packets_total",
    (b"Ip:", b"InDelivers"): "node_ip_delivered_packets_total",
    (b"Ip:", b"OutRequests"): "node_ip_sent_packets_total",
    (b"Ip:", b"InDiscards"): "node_ip_receive_discards_total",
    (b"Ip:", b"OutDiscards"): "node_ip_send_discards_total",
    (b"Ip:", b"InHdrErrors"): "node_ip_header_errors_total",
    (b"Ip:", b"ReasmFails"): "node_ip_reassembly_failures_total",
    (b"Icmp:", b"InMsgs"): "node_icmp_received_messages_total",
    (b"Icmp:", b"OutMsgs"): "node_icmp_sent_messages_total",
    (b"Icmp:", b"InErrors"): "node_icmp_receive_errors_total",
    (b"Tcp:", b"ActiveOpens"): "node_tcp_active_opens_total",
    (b"Tcp:", b"PassiveOpens"): "node_tcp_passive_opens_total",
    (b"Tcp:", b"AttemptFails"): "node_tcp_attempt_fails_total",
    (b"Tcp:", b"EstabResets"): "node_tcp_established_resets_total",
    (b"Tcp:", b"CurrEstab"): "node_tcp_connections_established",
    (b"Tcp:", b"InSegs"): "node_tcp_received_segments_total",
    (b"Tcp:", b"OutSegs"): "node_tcp_sent_segments_total",
    (b"Tcp:", b"RetransSegs"): "node_tcp_retransmitted_segments_total",
    (b"Tcp:", b"InErrs"): "node_tcp_receive_errors_total",
    (b"Tcp:", b"OutRsts"): "node_tcp_sent_resets_total",
    (b"Udp:", b"InDatagrams"): "node_udp_received_datagrams_total",
    (b"Udp:", b"OutDatagrams"): "node_udp_sent_datagrams_total",
    (b"Udp:", b"NoPorts"): "node_udp_no_port_total",
    (b"Udp:", b"InErrors"): "node_udp_receive_errors_total",
    (b"Udp:", b"RcvbufErrors"): "node_udp_receive_buffer_errors_total",
    (b"Udp:", b"SndbufErrors"): "node_udp_send_buffer_errors_total",
}
_PROTOCOLS = frozenset(proto for proto, _ in _SNMP)
#: a protocol's columns: (column count, series, the columns they come from)
_Columns = tuple[int, tuple[str, ...], tuple[int, ...]]

#: (sockstat line, field) -> (series, multiplier; 0 means page size).
_SOCKSTAT = {
    (b"sockets:", b"used"): ("node_sockets_used", 1),
    (b"TCP:", b"inuse"): ("node_tcp_sockets_inuse", 1),
    (b"TCP:", b"orphan"): ("node_tcp_sockets_orphan", 1),
    (b"TCP:", b"tw"): ("node_tcp_sockets_time_wait", 1),
    (b"TCP:", b"mem"): ("node_tcp_memory_bytes", 0),  # counted in pages
    (b"UDP:", b"inuse"): ("node_udp_sockets_inuse", 1),
}


class NetstatCollector(ColumnCollector):
    """Node-wide IP, ICMP, TCP and UDP counters (``node_ip_*_total``,
    ``node_icmp_*_total``, ``node_tcp_*_total``, ``node_udp_*_total``),
    established connections and socket counts (``node_sockets_used``,
    ``node_tcp_sockets_*``, ``node_tcp_memory_bytes``). IPv4 and IPv6 together, as
    the kernel counts them in /proc/net/snmp.

    Each file's layout is learnt from a read taken line by line (``_SnmpPlan``,
    ``_SockstatPlan``); later reads check it and pick their values in a few
    C-level calls.
    """

    name = "netstat"
    default_interval = 1.0
    #: only /proc files the kernel makes from memory: read on the agent's loop
    on_loop = True

    def __init__(self, procfs: str = "/proc", page_size: int | None = None) -> None:
        self._snmp = ProcFile(f"{procfs}/net/snmp")
        self._sockstat = ProcFile(f"{procfs}/net/sockstat")
        self._page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        # header line -> (column count, [(column, series)]): headers never change
        # on a running kernel, so each is matched against _SNMP once, not per read.
        self._columns: dict[bytes, _Columns | None] = {}
        self._snmp_plan: _SnmpPlan | None = None
        self._sockstat_plan: _SockstatPlan | None = None
        self._layout = Layout()

    def collect_columns(self) -> tuple[tuple[str, ...], list[float | None]]:
        """Read both files; a missing one drops its series only."""
        names: list[str] = []
        values: list[float | None] = []
        self._from_snmp(names, values)
        self._from_sockstat(names, values)
        return self._layout(names), values

    def _from_snmp(self, names: list[str], values: list[float | None]) -> None:
        raw = self._snmp.read()
        if not raw:
            return
        lines = raw.split(b"\n")
        if _by_plan(self._snmp_plan, lines, names, values):
            return
        start = len(values)
        taken = self._snmp_by_lines(lines, names, values)
        # A value that is not a number now may be one at the next read: learn again then.
        self._snmp_plan = None if None in values[start:] else _SnmpPlan.learn(lines, taken)

    def _snmp_by_lines(
        self, lines: list[bytes], names: list[str], values: list[float | None]
    ) -> list[_Columns | None]:
        """Fill ``names`` and ``values`` line by line; returns the columns taken
        from each pair of lines (``None`` for a pair left out)."""
        taken: list[_Columns | None] = []
        # Each protocol is a header line of column names, then a line of values.
        for head, line in zip(lines[::2], lines[1::2]):
            columns = self._columns.get(head)
            if columns is None:
                columns = self._columns[head] = _wanted_columns(head)
            numbers = line.split()
            if not columns or len(numbers) != columns[0]:
                taken.append(None)
                continue
            taken.append(columns)
            names += columns[1]
            values += [_float(numbers[i]) for i in columns[2]]
        return taken

    def _from_sockstat(self, names: list[str], values: list[float | None]) -> None:
        raw = self._sockstat.read()
        if not raw:
            return
        lines = raw.split(b"\n")
        if _by_plan(self._sockstat_plan, lines, names, values):
            return
        start = len(values)
        # "TCP: inuse 11 orphan 0 tw 2 alloc 14 mem 93"
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            for key, number in zip(fields[1::2], fields[2::2]):
                spec = _SOCKSTAT.get((fields[0], key))
                if spec is not None:
                    value = _float(number)
                    scale = spec[1] or self._page_size
                    names.append(spec[0])
                    values.append(None if value is None else value * scale)
        numbers = None not in values[start:]
        self._sockstat_plan = _SockstatPlan.learn(lines, names[start:], self._page_size) if numbers else None


def _by_plan(plan: "_SnmpPlan | _SockstatPlan | None", lines: list[bytes], names: list[str],
             values: list[float | None]) -> bool:
    """Take a file's values by its learnt plan; False when there is none or the
    file's layout changed (the caller reads it line by line and learns again)."""
    got = plan.values(lines) if plan is not None else None
    if got is None:
        return False
    names += plan.names
    values += got
    return True


class _SnmpPlan:
    """/proc/net/snmp as learnt from one read: its header lines (compared whole,
    so the columns are the learnt ones), how many tokens each value line has and
    where the wanted values sit among them (``shape``)."""

    __slots__ = ("names", "lines", "headers", "counts", "shape")

    def __init__(
        self, names: tuple[str, ...], lines: int, headers: list[bytes], counts: list[int], shape: Shape
    ) -> None:
        self.names = names
        self.lines = lines
        self.headers = headers
        self.counts = counts
        self.shape = shape

    def values(self, lines: list[bytes]) -> list[float] | None:
        """The wanted values of a read cut into ``lines``; ``None`` when its layout
        is not the learnt one or a value is not a number."""
        if len(lines) != self.lines or lines[::2] != self.headers:
            return None
        tokens = tokens_by_line(lines[1::2], self.counts)
        return None if tokens is None else self.shape.floats(tokens)

    @classmethod
    def learn(cls, lines: list[bytes], taken: list[_Columns | None]) -> _SnmpPlan:
        """The plan of a read cut into ``lines`` that took ``taken`` columns from
        each pair of lines."""
        names: list[str] = []
        keys: list[int] = []
        expect: list[bytes] = []
        positions: list[int] = []
        counts: list[int] = []
        n = 0
        for line, columns in zip(lines[1::2], taken):
            numbers = line.split()
            if numbers:
                keys.append(n)
                expect.append(numbers[0])
            if columns is not None:
                names += columns[1]
                positions += [n + i for i in columns[2]]
            counts.append(len(numbers))
            n += len(numbers)
        return cls(tuple(names), len(lines), lines[::2], counts, Shape(n, keys, expect, positions))


class _SockstatPlan:
    """/proc/net/sockstat as learnt from one read: how many tokens each line has,
    its first token and keys (``shape``'s keys) and the values wanted, with their
    scales."""

    __slots__ = ("names", "counts", "shape", "scales")

    def __init__(self, names: tuple[str, ...], counts: list[int], shape: Shape, scales: list[int]) -> None:
        self.names = names
        self.counts = counts
        self.shape = shape
        self.scales = scales

    def values(self, lines: list[bytes]) -> list[float] | None:
        """The wanted values of a read cut into ``lines``, scaled; ``None`` as for
        ``_SnmpPlan.values``."""
        tokens = tokens_by_line(lines, self.counts)
        got = None if tokens is None else self.shape.floats(tokens)
        return None if got is None else list(map(mul, got, self.scales))

    @classmethod
    def learn(cls, lines: list[bytes], names: list[str], page_size: int) -> _SockstatPlan:
        """The plan of a read cut into ``lines`` that gave ``names``."""
        keys: list[int] = []
        expect: list[bytes] = []
        positions: list[int] = []
        scales: list[int] = []
        counts: list[int] = []
        n = 0
        for line in lines:
            fields = line.split()
            # the line's name and its keys: "TCP: inuse 11 orphan 0 ..."
            for i in [0, *range(1, len(fields), 2)] if fields else []:
                keys.append(n + i)
                expect.append(fields[i])
            for i in range(1, len(fields) - 1, 2):
                spec = _SOCKSTAT.get((fields[0], fields[i]))
                if spec is not None:
                    positions.append(n + i + 1)
                    scales.append(spec[1] or page_size)
            counts.append(len(fields))
            n += len(fields)
        return cls(tuple(names), counts, Shape(n, keys, expect, positions), scales)


def _wanted_columns(head: bytes) -> _Columns | None:
    """(column count, series, their columns) for a protocol's header line."""
    names = head.split()
    if not names or names[0] not in _PROTOCOLS:
        return None
    wanted = [(i, _SNMP[(names[0], col)]) for i, col in enumerate(names) if (names[0], col) in _SNMP]
    return (len(names), tuple(m for _, m in wanted), tuple(i for i, _ in wanted))


def _float(text: bytes) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
