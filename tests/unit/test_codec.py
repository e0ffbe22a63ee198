"""The wire codec: golden vectors, round trips, and decode's totality under fuzzing.

``decode`` must either return a frame that encodes again or raise ``DecodeError``
(``VersionError`` for an unknown protocol version) — never anything else, whatever
the bytes. The golden vectors in ``tests/vectors/frames.json`` are read, never
regenerated, so a change to the wire format fails here.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clumon.proto import codec
from clumon.proto.codec import DecodeError, VersionError
from clumon.proto.frames import (
    BODY_TYPES,
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
    Log,
    LogFile,
    Reply,
    Request,
    make,
    seq_ranges,
)

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"


def _load_canon():
    spec = importlib.util.spec_from_file_location("clumon_vectors_canon", VECTORS_DIR / "canon.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


canon = _load_canon()
VECTORS = json.loads((VECTORS_DIR / "frames.json").read_text())
VALID = VECTORS["valid"]
MALFORMED = VECTORS["malformed"]
CANONICAL = [v for v in VALID if v["canonical"]]
SEEDS = [bytes.fromhex(v["hex"]) for v in CANONICAL]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ids(cases):
    return [c["name"] for c in cases]


# --- golden vectors ------------------------------------------------------------


def test_vectors_cover_every_kind():
    assert {Kind[v["value"]["kind"]] for v in CANONICAL} == set(Kind)
    assert VECTORS["protocol_version"] == PROTOCOL_VERSION


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_vector_decodes_to_pinned_value(case):
    frame = codec.decode(bytes.fromhex(case["hex"]))
    assert canon.frame_to_json(frame) == case["value"]


@pytest.mark.parametrize("case", CANONICAL, ids=_ids(CANONICAL))
def test_pinned_value_encodes_to_pinned_bytes(case):
    assert codec.encode(canon.frame_from_json(case["value"])).hex() == case["hex"]


@pytest.mark.parametrize("case", [v for v in VALID if not v["canonical"]],
                         ids=_ids([v for v in VALID if not v["canonical"]]))
def test_accepted_non_canonical_vector_reencodes_to_same_value(case):
    frame = codec.decode(bytes.fromhex(case["hex"]))
    again = codec.encode(frame)
    assert again.hex() != case["hex"]
    assert canon.frame_to_json(codec.decode(again)) == case["value"]


@pytest.mark.parametrize("case", MALFORMED, ids=_ids(MALFORMED))
def test_malformed_vector_raises_its_error(case):
    expected = {"DecodeError": DecodeError, "VersionError": VersionError}[case["error"]]
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes.fromhex(case["hex"]), case.get("max_frame_bytes", codec.MAX_FRAME_BYTES))
    assert type(info.value) is expected, info.value


def test_oversized_vector_decodes_with_the_default_limit():
    """The size vector is refused only because of its limit, not its content."""
    (case,) = [c for c in MALFORMED if c["name"] == "oversized"]
    data = bytes.fromhex(case["hex"])
    assert codec.decode(data, len(data)).kind is Kind.HELLO


def test_size_is_checked_before_unpacking(monkeypatch):
    def must_not_unpack(*args, **kwargs):
        raise AssertionError("unpacked an oversized frame")

    monkeypatch.setattr(codec.msgpack, "unpackb", must_not_unpack)
    with pytest.raises(DecodeError, match="max_frame_bytes"):
        codec.decode(b"\x90" * 101, max_frame_bytes=100)


def test_version_error_is_a_decode_error():
    """Receive loops catch one class; the version still gets its own."""
    assert issubclass(VersionError, DecodeError)
    assert issubclass(DecodeError, ValueError)


# --- round trips and encode -------------------------------------------------------


@pytest.mark.parametrize("case", CANONICAL, ids=_ids(CANONICAL))
def test_every_vector_round_trips(case):
    frame = canon.frame_from_json(case["value"])
    assert codec.decode(codec.encode(frame)) == frame


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name for k in Kind])
def test_encode_refuses_seq_that_decode_would_reject(kind):
    example = next(canon.frame_from_json(v["value"]) for v in CANONICAL if v["value"]["kind"] == kind.name)
    wrong = None if kind in STORED_KINDS else 1
    bad = Frame(kind, example.sender, example.incarnation, example.ts, example.body, wrong)
    with pytest.raises(ValueError):
        codec.encode(bad)


def test_encode_batch_matches_encode_of_a_batch_frame():
    inner = [bytes.fromhex(v["hex"]) for v in CANONICAL[:3]]
    via_make = codec.encode(make("rack-1", 5, 12.5, Batch(tuple(inner))))
    assert codec.encode_batch("rack-1", 5, 12.5, inner) == via_make


def test_batch_carries_inner_frames_untouched():
    inner = SEEDS[:4]
    frame = codec.decode(codec.encode_batch("rack-1", 5, 12.5, inner))
    assert frame.body.frames == tuple(inner)
    assert [codec.decode(b) for b in frame.body.frames] == [codec.decode(b) for b in inner]


def test_decode_accepts_buffers_other_than_bytes():
    data = SEEDS[0]
    assert codec.decode(memoryview(data)) == codec.decode(bytearray(data)) == codec.decode(data)


def test_data_helpers():
    d = Data.from_values(3, [1.5, None, -2.0], [7, 2, 65535])
    assert list(d.pairs()) == [(7, 1.5), (2, None), (65535, -2.0)]
    dense = Data.from_values(3, [0.0, 1.0])
    assert dense.index is None and dense.index_array().tolist() == [0, 1]
    assert len(d.values) == 24 and len(d.index) == 6


def test_seq_ranges_and_ack_entries():
    assert seq_ranges([7, 1, 2, 3, 3, 9, 8]) == ((1, 3), (7, 9))
    assert seq_ranges([]) == ()
    assert list(AckEntry("n", 1, ((1, 2), (5, 5))).seqs()) == [1, 2, 5]


def test_stored_property():
    assert {k for k in Kind if Frame(k, "n", 1, 0.0, None).stored} == {Kind.HELLO, Kind.DATA, Kind.EVENT, Kind.LOG}


# --- hypothesis: decode is total -------------------------------------------------


def assert_total(data: bytes) -> Frame | None:
    """decode raises DecodeError, or returns a frame that is a fixed point of
    encode/decode (bytes, not ==: NaN inside a free-form value is not equal to itself)."""
    try:
        frame = codec.decode(data)
    except DecodeError:
        return None
    assert isinstance(frame, Frame)
    assert isinstance(frame.body, BODY_TYPES[frame.kind])
    assert (frame.seq is not None) == (frame.kind in STORED_KINDS)
    again = codec.encode(frame)
    assert codec.encode(codec.decode(again)) == again
    return frame


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_never_escape_decode(data):
    assert_total(data)


_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=9)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 9)),
)


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << arg
        elif op == "set":
            buf[i] = arg
        elif op == "insert":
            buf[i:i] = arg
        else:
            del buf[i:i + arg]
    return bytes(buf)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_valid_frames_never_escape_decode(seed, ops):
    assert_total(_mutate(seed, ops))


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=20),
    st.binary(max_size=20),
)
_ODD = st.one_of(
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1)),
)
_ANY_MSGPACK = st.recursive(
    st.one_of(_SCALARS, _ODD),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=4), st.integers()), inner, max_size=4),
    max_leaves=20,
)


def _pack(obj) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        assume(False)


@FUZZ
@given(_ANY_MSGPACK)
def test_random_msgpack_structures_never_escape_decode(obj):
    assert_total(_pack(obj))


@FUZZ
@given(
    st.sampled_from([1, 1, 1, 0, 2]),
    st.integers(0, 11),
    st.one_of(st.text(min_size=1, max_size=12), _ANY_MSGPACK),
    st.one_of(st.integers(0, 2**63 - 1), _ANY_MSGPACK),
    st.one_of(st.floats(), _ANY_MSGPACK),
    st.one_of(st.none(), st.integers(0, 100), _ANY_MSGPACK),
    _ANY_MSGPACK,
)
def test_frame_shaped_random_arrays_never_escape_decode(version, kind, sender, inc, ts, seq, body):
    assert_total(_pack([version, kind, sender, inc, ts, seq, body]))


def _paths(obj, path=()):
    yield path
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from _paths(x, path + (i,))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from _paths(x, path + (k,))


def _replace(obj, path, new):
    if not path:
        return new
    head, *rest = path
    if isinstance(obj, list):
        return [(_replace(x, rest, new) if i == head else x) for i, x in enumerate(obj)]
    return {k: (_replace(x, rest, new) if k == head else x) for k, x in obj.items()}


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_valid_frames_with_one_field_replaced_never_escape_decode(seed, data):
    """Structure-aware mutation: swap one nested element of a real frame for a
    random value, so the fuzzing reaches every body decoder's field checks."""
    obj = msgpack.unpackb(seed, raw=False)
    path = data.draw(st.sampled_from(list(_paths(obj))))
    new = data.draw(_ANY_MSGPACK)
    assert_total(_pack(_replace(obj, path, new)))


# --- hypothesis: valid frames of every kind round-trip -----------------------------

_names = st.text(min_size=1, max_size=30)
_u63 = st.integers(0, 2**63 - 1)
_plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
              st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_maps = st.dictionaries(st.text(max_size=10), _plain, max_size=5)


@st.composite
def _data_bodies(draw):
    n = draw(st.integers(0, 40))
    values = draw(st.binary(min_size=8 * n, max_size=8 * n))  # every bit pattern, NaNs included
    index = draw(st.none() | st.binary(min_size=2 * n, max_size=2 * n))
    return Data(draw(_u63), values, index)


@st.composite
def _ack_entries(draw):
    bounds = draw(st.lists(st.tuples(_u63, _u63), max_size=5))
    return AckEntry(draw(_names), draw(_u63), tuple((min(a, b), max(a, b)) for a, b in bounds))


@st.composite
def _log_files(draw):
    lines = draw(st.lists(st.text(max_size=40), max_size=8))
    gaps = draw(st.lists(st.integers(1, 10**6), min_size=len(lines) + 1, max_size=len(lines) + 1))
    offsets, at = [], draw(st.integers(0, 2**40))
    for g in gaps[:-1]:
        offsets.append(at)
        at += g
    fields = draw(st.none() | st.lists(st.none() | _maps, min_size=len(lines), max_size=len(lines)).map(tuple))
    matches = draw(st.lists(st.tuples(st.integers(0, len(lines) - 1), _names), max_size=3).map(tuple)) \
        if lines else ()
    return LogFile(draw(_u63), draw(_names), draw(_names), draw(st.floats(allow_nan=False, allow_infinity=False)),
                   at, tuple(offsets), tuple(lines), fields, matches)


_BODIES = {
    Kind.LOG: st.builds(Log, st.lists(_log_files(), max_size=3).map(tuple)),
    Kind.HELLO: st.builds(Hello, _u63, st.lists(st.text(min_size=1, max_size=60), max_size=30).map(tuple), _maps, _names),
    Kind.DATA: _data_bodies(),
    Kind.EVENT: st.builds(Event, _names, _names, st.text(max_size=200), _maps),
    Kind.BATCH: st.builds(Batch, st.lists(st.binary(max_size=60), max_size=6).map(tuple)),
    Kind.HEARTBEAT: st.builds(Heartbeat, _u63),
    Kind.ACK: st.builds(Ack, st.lists(_ack_entries(), max_size=4).map(tuple)),
    Kind.REQUEST: st.builds(Request, _names, _names, st.lists(_names, max_size=5).map(tuple), _maps,
                            st.floats(min_value=0, allow_infinity=False)),
    Kind.REPLY: st.builds(Reply, _names, st.booleans(), _plain, st.none() | _maps),
    Kind.CONTROL: st.builds(Control, _names, _names, _maps),
}
assert set(_BODIES) == set(Kind)


@st.composite
def valid_frames(draw, kind: Kind):
    body = draw(_BODIES[kind])
    seq = draw(_u63) if kind in STORED_KINDS else None
    ts = draw(st.floats(allow_nan=False, allow_infinity=False))
    return make(draw(st.text(min_size=1, max_size=255)), draw(_u63), ts, body, seq)


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name for k in Kind])
def test_random_valid_frames_round_trip(kind):
    @ROUND_TRIP
    @given(valid_frames(kind))
    def check(frame):
        data = codec.encode(frame)
        back = codec.decode(data)
        assert back == frame
        assert codec.encode(back) == data

    check()


@ROUND_TRIP
@given(st.lists(st.one_of(*(valid_frames(k) for k in Kind)), max_size=5))
def test_random_batches_round_trip(frames):
    inner = [codec.encode(f) for f in frames]
    batch = codec.decode(codec.encode_batch("rack-1", 1, 2.0, inner))
    assert [codec.decode(b) for b in batch.body.frames] == frames


def test_ts_nan_and_infinity_never_decode():
    for ts in (math.nan, math.inf, -math.inf):
        data = msgpack.packb([1, int(Kind.HEARTBEAT), "n", 1, ts, None, [0]])
        with pytest.raises(DecodeError, match="ts"):
            codec.decode(data)


def test_data_frames_cost_under_12_bytes_per_value():
    """The wire-size target (issue 2): an idle node's ~150 values, dense or with an
    index, under 12 B per value — even with a long name and a large seq."""
    values = [i * 1.1 for i in range(150)]
    sender = "node-0042.rack-17.site"
    dense = codec.encode(make(sender, 2**62, 1.7e9, Data.from_values(3, values), 2**40))
    sparse = codec.encode(make(sender, 2**62, 1.7e9, Data.from_values(3, values, range(150)), 2**40))
    assert len(dense) / 150 < 12 and len(sparse) / 150 < 12
    assert len(dense) - 8 * 150 < 64, "the header stays small"


_SEQ = st.one_of(st.integers(0, 2**63 - 1), st.integers(-5, -1), st.integers(2**63, 2**64 - 1), st.booleans(),
                 st.floats(0, 10), st.just(None))
_GOOD_ACK_ENTRY = st.tuples(st.text(min_size=1, max_size=12), st.integers(0, 2**63 - 1),
                            st.lists(st.integers(0, 50), max_size=6)).map(list)
_BAD_ACK_ENTRY = st.one_of(
    st.tuples(st.one_of(st.text(min_size=1, max_size=12), st.just(""), st.text(min_size=256, max_size=260), _SEQ),
              st.one_of(st.integers(0, 2**63 - 1), _SEQ, st.text(max_size=3)),
              st.one_of(st.lists(st.integers(0, 50), max_size=6), st.lists(_SEQ, max_size=4), _SEQ)).map(list),
    _ANY_MSGPACK,
)
# mostly good entries: a body of 9+ entries must often be wholly good to be accepted
_BIG_ACK_ENTRY = st.one_of(*[_GOOD_ACK_ENTRY] * 12, _BAD_ACK_ENTRY)


@FUZZ
@given(st.lists(_BIG_ACK_ENTRY, min_size=codec._SMALL_ACK + 1, max_size=codec._SMALL_ACK + 6))
def test_ack_bodies_checked_in_bulk_decode_as_entry_by_entry(entries):
    """_dec_ack checks a whole ACK body (more than _SMALL_ACK entries) a column at a
    time; whatever it accepts or refuses, the entry-by-entry checks (which name the
    fault) decide the same."""
    def outcome(decode):
        try:
            return decode()
        except DecodeError:
            return "refused"

    bulk = outcome(lambda: codec._dec_ack(entries))
    one_by_one = outcome(lambda: Ack(tuple(codec._dec_ack_entry(e) for e in entries)))
    assert bulk == one_by_one


# --- finite extremes and deep nesting --------------------------------------------


@pytest.mark.parametrize("value", [1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, -0.0, 2.2250738585072014e-308])
def test_finite_extremes_round_trip_exactly(value):
    frame = make("n1", 1, 1.0, Data.from_values(1, [value, value]), 2)
    back = codec.decode(codec.encode(frame))
    assert [math.copysign(1, v) for v in back.body.value_array().tolist()] == [math.copysign(1, value)] * 2
    assert back.body.value_array().tolist() == [value, value]
    event = codec.decode(codec.encode(make("n1", 1, 1.0, Event("x", "n1", "m", {"v": value}), 3)))
    assert event.body.attrs["v"] == value


def test_nesting_is_bounded_for_every_free_form_value():
    """A HELLO whose inventory nested ~500 levels killed the root's commit task
    (RecursionError in its JSON columns): deeper than MAX_NESTING is a DecodeError."""
    def wire(kind: int, body: list) -> bytes:  # built by hand, deeper than msgpack.packb nests
        hole = msgpack.packb("HOLE")
        data = msgpack.packb([PROTOCOL_VERSION, kind, "n1", 1, 1.0, 1, body], use_bin_type=True)
        return data.replace(hole, b"\x91" * depth + msgpack.packb("leaf")) if hole in data else data

    depth = codec.MAX_NESTING - 3
    assert codec.decode(wire(int(Kind.HELLO), [1, ["a"], {"x": "HOLE"}, "agent"]))
    assert codec.decode(wire(int(Kind.EVENT), ["x", "n1", "m", {"x": "HOLE"}]))
    for depth in (codec.MAX_NESTING + 1, 500, 5000, 100_000):
        for data in (wire(int(Kind.HELLO), [1, ["a"], {"x": "HOLE"}, "agent"]),
                     wire(int(Kind.EVENT), ["x", "n1", "m", {"x": "HOLE"}])):
            with pytest.raises(DecodeError, match="nested deeper|not msgpack"):
                codec.decode(data)
