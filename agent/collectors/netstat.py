"""TCP/UDP protocol counters from /proc/net/snmp and socket counts from
/proc/net/sockstat."""

from __future__ import annotations

import os

from .base import ColumnCollector, Layout, ProcFile

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
        self._columns: dict[bytes, tuple[int, tuple[str, ...], tuple[int, ...]] | None] = {}
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
        # Each protocol is a header line of column names, then a line of values.
        for head, line in zip(lines[::2], lines[1::2]):
            columns = self._columns.get(head)
            if columns is None:
                columns = self._columns[head] = _wanted_columns(head)
            if not columns:
                continue
            numbers = line.split()
            if len(numbers) != columns[0]:
                continue
            names += columns[1]
            values += [_float(numbers[i]) for i in columns[2]]

    def _from_sockstat(self, names: list[str], values: list[float | None]) -> None:
        raw = self._sockstat.read()
        if not raw:
            return
        # "TCP: inuse 11 orphan 0 tw 2 alloc 14 mem 93"
        for line in raw.split(b"\n"):
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


def _wanted_columns(head: bytes) -> tuple[int, tuple[str, ...], tuple[int, ...]] | None:
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
