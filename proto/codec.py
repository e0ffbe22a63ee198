"""Pure, strict codec: ``encode(frame) -> bytes`` and ``decode(bytes) -> frame``.

Wire form (msgpack array)::

    [version, kind, sender, incarnation, ts, seq, body]

``seq`` is an int for the stored kinds and nil otherwise; ``body`` is an array
whose shape depends on the kind (see ``_BODY_CODECS``). Decoding checks the size
before unpacking and every field's type after; anything wrong raises
``DecodeError`` (``VersionError`` for an unknown protocol version) and nothing else.
"""

from __future__ import annotations

import math
import operator
from itertools import chain, repeat
from typing import Any, Callable

import msgpack

from .frames import (
    PROTOCOL_VERSION,
    STORED_KINDS,
    Ack,
    AckEntry,
    Batch,
    Control,
    Data,
    Event,
    Frame,
    Heartbeat,
    Hello,
    Kind,
    LOG_FORMAT,
    Log,
    LogFile,
    Reply,
    Request,
)

#: Default upper bound on one frame; larger input is refused before unpacking.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: levels of maps and arrays a free-form value (inventory, attrs, args, results) may have
MAX_NESTING = 16
MAX_NAME_LEN = 255
MAX_BATCH_DEPTH = 8


class DecodeError(ValueError):
    """The bytes are not a valid Clumon+ frame."""


class VersionError(DecodeError):
    """The frame names a protocol version this build does not speak."""


# --- encoding -------------------------------------------------------------


def _enc_hello(b: Hello) -> list:
    return [b.dict_version, list(b.series), b.inventory, b.role]


def _enc_data(b: Data) -> list:
    return [b.dict_version, b.values, b.index]


def _enc_event(b: Event) -> list:
    return [b.type, b.subject, b.message, b.attrs]


def _enc_batch(b: Batch) -> list:
    return list(b.frames)


def _enc_heartbeat(b: Heartbeat) -> list:
    return [b.root]


def _enc_ack(b: Ack) -> list:
    return [[e.node, e.incarnation, [x for r in e.ranges for x in r]] for e in b.entries]


def _enc_request(b: Request) -> list:
    return [b.id, b.op, list(b.targets), b.args, float(b.timeout)]


def _enc_reply(b: Reply) -> list:
    return [b.id, b.ok, b.result, b.error]


def _enc_control(b: Control) -> list:
    return [b.op, b.target, b.args]


def _enc_log(b: Log) -> list:
    return [b.format, [[f.fid, f.source, f.path, float(f.ts), f.end, list(f.offsets), list(f.lines),
                        None if f.fields is None else list(f.fields), [list(m) for m in f.matches]]
                       for f in b.files]]


_ENCODERS: dict[Kind, Callable[[Any], list]] = {
    Kind.HELLO: _enc_hello,
    Kind.DATA: _enc_data,
    Kind.EVENT: _enc_event,
    Kind.BATCH: _enc_batch,
    Kind.HEARTBEAT: _enc_heartbeat,
    Kind.ACK: _enc_ack,
    Kind.REQUEST: _enc_request,
    Kind.REPLY: _enc_reply,
    Kind.CONTROL: _enc_control,
    Kind.LOG: _enc_log,
}


def encode(frame: Frame) -> bytes:
    """Serialise a frame. Raises ``ValueError`` for a frame that could not decode."""
    if (frame.seq is None) == (frame.kind in STORED_KINDS):
        raise ValueError(f"{frame.kind.name} frame with seq={frame.seq!r}")
    body = _ENCODERS[frame.kind](frame.body)
    return msgpack.packb(
        [frame.version, int(frame.kind), frame.sender, frame.incarnation, float(frame.ts), frame.seq, body],
        use_bin_type=True,
    )


def encode_batch(sender: str, incarnation: int, ts: float, frames: list[bytes]) -> bytes:
    """A BATCH frame around already-encoded frames, without copying them twice."""
    return msgpack.packb(
        [PROTOCOL_VERSION, int(Kind.BATCH), sender, incarnation, float(ts), None, frames],
        use_bin_type=True,
    )


# --- decoding -------------------------------------------------------------


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise DecodeError(what)


# The checks below build their message only when they fail: an f-string per
# field of every frame was a third of the cost of decoding an ACK.


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if type(v) is int and lo <= v <= hi:
        return v
    raise DecodeError(f"{what}: expected int in [{lo}, {hi}]")


def _float(v: Any, what: str) -> float:
    t = type(v)
    if t is not float and t is not int:
        raise DecodeError(f"{what}: expected number")
    f = float(v)
    if not math.isfinite(f):
        raise DecodeError(f"{what}: not finite")
    return f


def _str(v: Any, what: str, max_len: int = MAX_NAME_LEN, empty: bool = False) -> str:
    if type(v) is str and len(v) <= max_len and (empty or v != ""):
        return v
    raise DecodeError(f"{what}: expected string")


def _bytes(v: Any, what: str) -> bytes:
    if type(v) is bytes:
        return v
    raise DecodeError(f"{what}: expected bytes")


_PLAIN_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_CONTAINERS = frozenset({dict, list})
_STR_ONLY = {str}
_INT_ONLY = {int}
_LIST_ONLY = {list}
_THREE = {3}


def _plain(v: Any, what: str) -> Any:
    """Free-form values (inventory, attrs, args, results) hold only plain msgpack
    types with string map keys at every depth: an extension type or a msgpack
    Timestamp would pass here and then break the root's JSON columns."""
    items = [v]
    depth = 0
    while True:  # one level of nesting at a time: msgpack nests deeper than Python recurses
        depth += 1
        types = set(map(type, items))  # every item of this level, in one pass in C
        bad = types - _PLAIN_SCALARS - _CONTAINERS
        if bad:
            raise DecodeError(f"{what}: {next(iter(bad)).__name__} is not a plain msgpack value")
        if not types & _CONTAINERS:
            return v
        if depth >= MAX_NESTING:
            # nothing we send nests this deep; the root's JSON columns would recurse on it
            raise DecodeError(f"{what}: nested deeper than {MAX_NESTING} levels")
        level = items if types <= _CONTAINERS else [x for x in items if type(x) in _CONTAINERS]
        maps = [x for x in level if type(x) is dict] if dict in types else ()
        if maps and not set(map(type, chain.from_iterable(maps))) <= _STR_ONLY:
            raise DecodeError(f"{what}: map keys must be strings")
        lists = [x for x in level if type(x) is list] if maps else level
        items = [*chain.from_iterable(map(dict.values, maps)), *chain.from_iterable(lists)]


def _map(v: Any, what: str) -> dict:
    if type(v) is not dict:
        raise DecodeError(f"{what}: expected map with string keys")
    return _plain(v, what)


def _list(v: Any, what: str, n: int | None = None) -> list:
    if type(v) is list and (n is None or len(v) == n):
        return v
    raise DecodeError(f"{what}: expected array" + (f" of {n}" if n else ""))


def _dec_hello(b: Any) -> Hello:
    dv, series, inventory, role = _list(b, "HELLO body", 4)
    series = _list(series, "HELLO series")
    _need(len(series) <= 65535, "HELLO series: more than 65535")
    names = tuple(series)
    # one pass in C over the names; per-name checks only to name what is wrong
    if names and not (set(map(type, names)) == {str} and "" not in names and max(map(len, names)) <= 1024):
        names = tuple(_str(s, "HELLO series name", 1024) for s in series)
    return Hello(_int(dv, "dict_version"), names, _map(inventory, "inventory"), _str(role, "role"))


def _dec_data(b: Any) -> Data:
    dv, values, index = _list(b, "DATA body", 3)
    values = _bytes(values, "DATA values")
    _need(len(values) % 8 == 0, "DATA values: length not a multiple of 8")
    if index is not None:
        index = _bytes(index, "DATA index")
        _need(len(index) * 4 == len(values), "DATA index: length does not match values")
    return Data(_int(dv, "dict_version"), values, index)


def _dec_event(b: Any) -> Event:
    typ, subject, message, attrs = _list(b, "EVENT body", 4)
    return Event(_str(typ, "event type"), _str(subject, "event subject"),
                 _str(message, "event message", 65536, empty=True), _map(attrs, "event attrs"))


def _dec_batch(b: Any) -> Batch:
    frames = _list(b, "BATCH body")
    return Batch(tuple(_bytes(f, "BATCH item") for f in frames))


def _dec_heartbeat(b: Any) -> Heartbeat:
    (root,) = _list(b, "HEARTBEAT body", 1)
    return Heartbeat(_int(root, "root incarnation"))


def _dec_ack_entry(e: Any) -> AckEntry:
    node, inc, flat = _list(e, "ACK entry", 3)
    flat = _list(flat, "ACK ranges")
    _need(len(flat) % 2 == 0, "ACK ranges: odd length")
    nums = [_int(x, "ACK seq") for x in flat]
    ranges = tuple(zip(nums[0::2], nums[1::2]))
    _need(all(lo <= hi for lo, hi in ranges), "ACK ranges: lo > hi")
    return AckEntry(_str(node, "ACK node"), _int(inc, "ACK incarnation"), ranges)


def _ints_ok(values: Any) -> bool:
    return not values or (set(map(type, values)) == _INT_ONLY and min(values) >= 0 and max(values) <= 2**63 - 1)


def _ack_body_ok(entries: list) -> bool:
    """The whole ACK body checked a column at a time, in C (an ACK after a long
    commit has thousands of entries); False sends it through the per-entry checks,
    which name what is wrong."""
    if not entries:
        return True
    if set(map(type, entries)) != _LIST_ONLY or set(map(len, entries)) != _THREE:
        return False
    nodes, incs, flats = zip(*entries)
    if set(map(type, nodes)) != _STR_ONLY or min(map(len, nodes)) == 0 or max(map(len, nodes)) > MAX_NAME_LEN:
        return False
    if not _ints_ok(incs) or set(map(type, flats)) != _LIST_ONLY or any(map(operator.and_, map(len, flats), repeat(1))):
        return False
    seqs = list(chain.from_iterable(flats))  # every list has an even length: pairs stay aligned
    return _ints_ok(seqs) and all(map(operator.le, seqs[0::2], seqs[1::2]))


#: up to this many entries an ACK is checked entry by entry (an agent's ACK has one)
_SMALL_ACK = 8


def _dec_ack(b: Any) -> Ack:
    entries = _list(b, "ACK body")
    if len(entries) <= _SMALL_ACK or not _ack_body_ok(entries):
        return Ack(tuple(_dec_ack_entry(e) for e in entries))
    return Ack(tuple(AckEntry(node, inc, tuple(zip(flat[0::2], flat[1::2]))) for node, inc, flat in entries))


def _dec_request(b: Any) -> Request:
    rid, op, targets, args, timeout = _list(b, "REQUEST body", 5)
    targets = tuple(_str(t, "REQUEST target") for t in _list(targets, "REQUEST targets"))
    t = _float(timeout, "REQUEST timeout")
    _need(t >= 0, "REQUEST timeout: negative")
    return Request(_str(rid, "REQUEST id"), _str(op, "REQUEST op"), targets, _map(args, "REQUEST args"), t)


def _dec_reply(b: Any) -> Reply:
    rid, ok, result, error = _list(b, "REPLY body", 4)
    _need(type(ok) is bool, "REPLY ok: expected bool")
    if error is not None:
        error = _map(error, "REPLY error")
    return Reply(_str(rid, "REPLY id"), ok, _plain(result, "REPLY result"), error)


def _dec_control(b: Any) -> Control:
    op, target, args = _list(b, "CONTROL body", 3)
    return Control(_str(op, "CONTROL op"), _str(target, "CONTROL target"), _map(args, "CONTROL args"))


#: longest line a LOG frame may carry (the agent cuts at ``max_line_bytes``, far below)
MAX_LOG_LINE = 4 * 1024 * 1024
_FIELDS_TYPES = frozenset({dict, type(None)})


def _dec_log_file(f: Any) -> LogFile:
    fid, source, path, ts, end, offsets, lines, fields, matches = _list(f, "LOG file", 9)
    offsets = _list(offsets, "LOG offsets")
    lines = _list(lines, "LOG lines")
    _need(len(offsets) == len(lines), "LOG offsets: not one per line")
    # whole columns checked in C; a failure names the column
    _need(_ints_ok(offsets), "LOG offsets: expected ints >= 0")
    _need(all(map(operator.lt, offsets, offsets[1:])), "LOG offsets: not increasing")
    _need(not lines or (set(map(type, lines)) == _STR_ONLY and max(map(len, lines)) <= MAX_LOG_LINE),
          "LOG lines: expected strings")
    end = _int(end, "LOG end")
    _need(not offsets or end > offsets[-1], "LOG end: not after the last line")
    if fields is not None:
        fields = _list(fields, "LOG fields")
        _need(len(fields) == len(lines), "LOG fields: not one per line")
        _need(set(map(type, fields)) <= _FIELDS_TYPES, "LOG fields: expected a map or nil per line")
        _plain(fields, "LOG fields")
        fields = tuple(fields)
    pairs = []
    for m in _list(matches, "LOG matches"):
        i, rule = _list(m, "LOG match", 2)
        pairs.append((_int(i, "LOG match line", 0, max(len(lines) - 1, 0)), _str(rule, "LOG match rule")))
    _need(not pairs or len(lines) > 0, "LOG match: no lines")
    return LogFile(_int(fid, "LOG fid"), _str(source, "LOG source"), _str(path, "LOG path", 4096),
                   _float(ts, "LOG ts"), end, tuple(offsets), tuple(lines), fields, tuple(pairs))


def _dec_log(b: Any) -> Log:
    fmt, files = _list(b, "LOG body", 2)
    if fmt != LOG_FORMAT or type(fmt) is not int:
        raise DecodeError(f"LOG body: unknown layout {fmt!r} (this build reads {LOG_FORMAT})")
    return Log(tuple(_dec_log_file(f) for f in _list(files, "LOG files")), fmt)


_DECODERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.HELLO: _dec_hello,
    Kind.DATA: _dec_data,
    Kind.EVENT: _dec_event,
    Kind.BATCH: _dec_batch,
    Kind.HEARTBEAT: _dec_heartbeat,
    Kind.ACK: _dec_ack,
    Kind.REQUEST: _dec_request,
    Kind.REPLY: _dec_reply,
    Kind.CONTROL: _dec_control,
    Kind.LOG: _dec_log,
}

_KINDS = {int(k): k for k in Kind}


def unpack(data: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> Any:
    """msgpack-unpack with the size checked first; any failure is a DecodeError."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > max_frame_bytes:
        raise DecodeError(f"frame of {len(data)} bytes exceeds max_frame_bytes={max_frame_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"not msgpack: {type(exc).__name__}: {exc}") from None


def decode(data: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> Frame:
    """Parse and validate one frame; raise ``DecodeError`` on anything wrong."""
    obj = unpack(data, max_frame_bytes)
    _need(type(obj) is list and len(obj) >= 1, "frame: expected array")
    if obj[0] != PROTOCOL_VERSION or type(obj[0]) is not int:
        raise VersionError(f"unknown protocol version {obj[0]!r}")
    _need(len(obj) == 7, "frame: expected 7 fields")
    _, kind, sender, incarnation, ts, seq, body = obj
    if type(kind) is not int or kind not in _KINDS:
        raise DecodeError(f"unknown kind {kind!r}")
    kind = _KINDS[kind]
    if kind in STORED_KINDS:
        seq = _int(seq, "seq")
    else:
        _need(seq is None, "seq: only stored kinds carry one")
    try:
        parsed = _DECODERS[kind](body)
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:  # wrong arity in tuple unpacking
        raise DecodeError(f"{kind.name} body: {exc}") from None
    return Frame(kind, _str(sender, "sender"), _int(incarnation, "incarnation"), _float(ts, "ts"), parsed, seq)
