"""Frame types of the Clumon+ wire protocol.

A frame is a header (version, kind, sender, incarnation, ts, seq) and a body whose
type depends on the kind. Bodies are frozen dataclasses; the codec in ``codec.py``
turns them into msgpack and back. Nothing here does I/O.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # numpy is imported where values are decoded: the agent never needs it (11 MiB)
    import numpy as np

PROTOCOL_VERSION = 1


class Kind(IntEnum):
    """Frame kinds; the numbers are on the wire and never change meaning."""

    HELLO = 1
    DATA = 2
    EVENT = 3
    BATCH = 4
    HEARTBEAT = 5
    ACK = 6
    REQUEST = 7
    REPLY = 8
    CONTROL = 9
    LOG = 10


#: Kinds that are stored at the root and therefore carry a ``seq``.
STORED_KINDS = frozenset({Kind.HELLO, Kind.DATA, Kind.EVENT, Kind.LOG})

#: the layout of a LOG body; a receiver refuses a layout it does not know
LOG_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Hello:
    """Inventory and the series dictionary of a sender.

    ``series`` lists the series names; DATA frames refer to them by position.
    """

    dict_version: int
    series: tuple[str, ...]
    inventory: dict[str, Any] = field(default_factory=dict)
    role: str = "agent"


_BIG_ENDIAN = sys.byteorder == "big"


def _le_bytes(typecode: str, items: Iterable[float] | Iterable[int]) -> bytes:
    arr = array(typecode, items)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


@dataclass(frozen=True, slots=True)
class Data:
    """Values of series by their index in the dictionary, columnar.

    ``values`` is little-endian float64 bytes (NaN marks a missing value);
    ``index`` is little-endian uint16 bytes naming the series of each value, or
    ``None`` when the frame carries every series of the dictionary in order.
    """

    dict_version: int
    values: bytes
    index: bytes | None = None

    @classmethod
    def from_values(
        cls, dict_version: int, values: Sequence[float | None], index: Sequence[int] | None = None
    ) -> "Data":
        """Build a DATA body from Python floats (``None`` becomes NaN)."""
        vals = _le_bytes("d", [math.nan if v is None else v for v in values])
        return cls(dict_version, vals, None if index is None else _le_bytes("H", index))

    def value_array(self) -> "np.ndarray":
        """The values as a float64 array (a view, not a copy)."""
        import numpy as np
        return np.frombuffer(self.values, dtype="<f8")

    def index_array(self) -> "np.ndarray":
        """Series positions of each value."""
        import numpy as np
        if self.index is None:
            return np.arange(len(self.values) // 8, dtype=np.int64)
        return np.frombuffer(self.index, dtype="<u2").astype(np.int64)

    def pairs(self) -> Iterable[tuple[int, float | None]]:
        """(series position, value or None) for each value carried."""
        for i, v in zip(self.index_array().tolist(), self.value_array().tolist()):
            yield i, (None if math.isnan(v) else v)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: a state transition, a plugin failure, a loss.

    ``subject`` is the node (or tier) the event is about; it may differ from the
    frame's sender (an aggregator reports its children's transitions).
    """

    type: str
    subject: str
    message: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """An aggregator's envelope: children's frames as their original bytes."""

    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness. ``root`` is the root's incarnation as the sender knows it (0 if
    unknown): a child that sees it change replays its unacknowledged frames."""

    root: int = 0


@dataclass(frozen=True, slots=True)
class AckEntry:
    """Stored frames of one (node, incarnation): inclusive seq ranges."""

    node: str
    incarnation: int
    ranges: tuple[tuple[int, int], ...]

    def seqs(self) -> Iterable[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)


@dataclass(frozen=True, slots=True)
class Ack:
    entries: tuple[AckEntry, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """A request travelling down the tree.

    ``targets`` are node names or globs; ``timeout`` is the time left, in
    seconds, when the frame was sent (clocks of different hosts are not compared).
    """

    id: str
    op: str
    targets: tuple[str, ...]
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """An order from an ancestor: ``resend_hello``, ``set_masks``, ..."""

    op: str
    target: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogFile:
    """Lines of one file, read in one go, in file order.

    ``fid`` names one generation of one file (the agent draws it when it first
    sees the file, or the file's content begins anew); ``offsets[i]`` is where
    line ``i`` began in it, so ``(node, fid, offset)`` names a line for good and
    the root stores each once. ``end`` is where reading goes on after these
    lines: the position the agent keeps once this frame is acknowledged.
    ``fields`` are what the format parsed (one map or None per line, or None for
    none at all); ``matches`` are ``(line index, rule)`` of the rules that make
    an EVENT of a line (the root makes it, once, when it stores the line).
    """

    fid: int
    source: str
    path: str
    ts: float
    end: int
    offsets: tuple[int, ...]
    lines: tuple[str, ...]
    fields: tuple[dict[str, Any] | None, ...] | None = None
    matches: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Log:
    """Lines of a node's log files (``[[log]]`` sources), a batch of files."""

    files: tuple[LogFile, ...]
    format: int = LOG_FORMAT

    @property
    def line_count(self) -> int:
        return sum(len(f.lines) for f in self.files)


Body = Hello | Data | Event | Batch | Heartbeat | Ack | Request | Reply | Control | Log

BODY_TYPES: dict[Kind, type] = {
    Kind.HELLO: Hello,
    Kind.DATA: Data,
    Kind.EVENT: Event,
    Kind.BATCH: Batch,
    Kind.HEARTBEAT: Heartbeat,
    Kind.ACK: Ack,
    Kind.REQUEST: Request,
    Kind.REPLY: Reply,
    Kind.CONTROL: Control,
    Kind.LOG: Log,
}
KIND_OF_BODY: dict[type, Kind] = {t: k for k, t in BODY_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol frame. ``seq`` is set exactly for the stored kinds."""

    kind: Kind
    sender: str
    incarnation: int
    ts: float
    body: Body
    seq: int | None = None
    version: int = PROTOCOL_VERSION

    @property
    def stored(self) -> bool:
        return self.kind in STORED_KINDS


def make(sender: str, incarnation: int, ts: float, body: Body, seq: int | None = None) -> Frame:
    """A frame of the body's kind."""
    return Frame(KIND_OF_BODY[type(body)], sender, incarnation, ts, body, seq)


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Collapse seq numbers into sorted inclusive ranges: 1,2,3,7 -> (1,3),(7,7)."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return tuple((a, b) for a, b in out)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges merged where they overlap or touch: (5,5),(6,7),(9,9) -> (5,7),(9,9)."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)
