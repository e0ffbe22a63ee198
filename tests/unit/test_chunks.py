"""Chunk format: lossless round trips and refusal of damaged input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clumon.root.storage import chunks

times = st.lists(st.integers(0, 10**6), min_size=1, max_size=300).map(
    lambda steps: 1.7e9 + np.cumsum(np.array(steps, dtype=np.int64)) / 1000.0
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_points_round_trip_bit_for_bit(data):
    ts = data.draw(times)
    floats = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**15), 10**15).map(float),
        st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False).map(float),
        st.integers(0, 1000).map(lambda i: i / 100 / 3),
    )
    values = np.array(data.draw(st.lists(floats, min_size=len(ts), max_size=len(ts))), dtype=np.float64)
    t2, v2 = chunks.decode(chunks.encode(ts, values))
    assert np.array_equal(v2.view(np.uint64), values.view(np.uint64))
    assert np.array_equal(np.round(t2 * 1000), np.round(ts * 1000))


def test_regular_decimal_series_compress_below_two_bytes_per_point():
    rng = np.random.default_rng(7)
    n = 3600
    ts = 1.7e9 + np.arange(n) + rng.normal(0, 0.002, n)
    load = np.round(np.abs(np.cumsum(rng.normal(0, 0.02, n))) + 0.5, 2)
    pct = np.round(np.clip(20 + rng.normal(0, 1, n), 0, 100), 1) / 100
    for values in (load, pct, np.full(n, 3.0)):
        assert len(chunks.encode(ts, values)) / n < 2.0


def test_page_sized_byte_counts_are_stored_as_steps():
    rng = np.random.default_rng(3)
    n = 1800
    ts = 1.7e9 + np.arange(n)
    used = 8e9 + 4096.0 * np.cumsum(rng.integers(-3000, 3000, n))
    as_pages = len(chunks.encode(ts, used))
    assert as_pages < len(chunks.encode(ts, used + np.arange(n) % 2)) - n // 4  # 12 zero bits a point
    t2, v2 = chunks.decode(chunks.encode(ts, used))
    assert np.array_equal(v2, used)


#: Chunks written by format version 1 (before ``step``): still readable.
V1_CHUNKS = [
    ("0128b52ffd2032910100060000000068e5cf8b01000002020400d000000000070000000000000000f53240400040bf0001010001030000"
     "0000000000", [4096.0, 8192, 8192, 12288, 0.5, 3.0]),
    ("0128b52ffd204afd0100e402060000000068e5cf8b01000002000800d0079a00cf55009c9900cc55007500883ce4b9701c2de42b3f0000"
     "403f3e06004004dc81c65284a28438c15c02", [0.1, 0.2, 1 / 3, float("nan"), 7.0, 1e300]),
]


@pytest.mark.parametrize("hexed, values", V1_CHUNKS)
def test_version_1_chunks_still_decode(hexed, values):
    ts, vs = chunks.decode(bytes.fromhex(hexed))
    assert np.array_equal(ts, 1.7e9 + np.arange(6.0))
    assert np.array_equal(vs, np.array(values), equal_nan=True)


#: Chunks written by format version 2 (timestamps as delta-of-delta): still readable.
V2_CHUNKS = [
    ("0228b52ffd202e3d0100e8060000000068e5cf8b010000020202000500d00700fd0a40400040bf000300305350ec358030",
     1.7e9 + np.arange(6.0), [4096.0, 8192, 8192, 12288, 0.5, 3.0]),
    ("0228b52ffd20521502000403060000000068e5cf8b010000020008000100d0079a00cf55009c9900cc55007500883ce4b9701c2de42b3f"
     "0000403f3e072070d30322ee3616428560b8061606", 1.7e9 + np.arange(6.0), [0.1, 0.2, 1 / 3, float("nan"), 7.0, 1e300]),
    ("0228b52ffd203ad10100060000000068e5cf8b010000020604000200000000000000d609a6eaa307000fd2de3a16a7f89ff8309361248624"
     "000000010101000000000000", 1.7e9 + np.array([0, 1.003, 2.001, 5.002, 35.0, 36.5]),
     [0.12346, 0.5, 0.25, 1.0, 0.0, 0.75]),
]


@pytest.mark.parametrize("hexed, times, values", V2_CHUNKS)
def test_version_2_chunks_still_decode(hexed, times, values):
    ts, vs = chunks.decode(bytes.fromhex(hexed))
    assert np.array_equal(np.round(ts * 1000), np.round(times * 1000))
    assert np.array_equal(vs, np.array(values), equal_nan=True)


def test_irregular_times_cost_less_as_seconds_and_jitter_than_as_delta_of_delta():
    rng = np.random.default_rng(5)
    gaps = rng.choice([1, 1, 1, 2, 3, 5, 30], 1799) * 1000 + rng.integers(-4, 5, 1799)
    ts = (1.7e12 + np.concatenate(([0], np.cumsum(gaps)))) / 1000
    v3 = chunks.encode(ts, np.zeros(len(ts)))
    assert np.array_equal(np.round(chunks.decode(v3)[0] * 1000), np.round(ts * 1000))
    dod = np.diff(np.diff(np.round(ts * 1000).astype(np.int64)), prepend=0)
    width, planes = chunks._narrow(chunks._zigzag(dod))  # what version 2 stored
    assert len(v3) < len(chunks._compressor.compress(planes))


@pytest.mark.parametrize("bad", [b"", b"\x04abc", b"\x03abc", b"\x02abc", b"\x01not zstd",
                                 b"\x01" + chunks._compressor.compress(b"short"),
                                 b"\x02" + chunks._compressor.compress(b"short"),
                                 b"\x03" + chunks._compressor.compress(b"short")])
def test_damaged_chunks_raise_chunk_error(bad):
    with pytest.raises(chunks.ChunkError):
        chunks.decode(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_chunk_error(junk):
    for version in (b"\x01", b"\x02", b"\x03"):
        try:
            chunks.decode(version + chunks._compressor.compress(junk))
        except chunks.ChunkError:
            pass


def test_negative_zero_comes_back_with_its_sign():
    import numpy as np
    from clumon.root.storage import chunks
    ts = np.array([1.0, 2.0, 3.0])
    values = np.array([0.0, -0.0, 1.5])
    _, back = chunks.decode(chunks.encode(ts, values))
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))


TINY_AND_SIGNED = [
    [-5e-324],  # bits 0x8000000000000001: np.round gave -0.0, decode() rebuilt +0.0 -> +5e-324
    [5e-324],
    [-0.0],
    [-1e-323, -5e-324, 0.0, 5e-324],
    [-2.2250738585072014e-308],  # smallest negative normal
    [-2.225073858507201e-308, 2.225073858507201e-308],  # largest denormals, both signs
    [-5e-324, 0.1, 0.25, -3.0],  # a decimal chunk (d = 2) with a tiny negative in it
    [1.5, -5e-324, float("nan"), -0.0, 42.0, float("-inf"), 1 / 3, 5e-324, float("inf")],
]


@pytest.mark.parametrize("values", TINY_AND_SIGNED)
def test_zero_denormals_and_signs_round_trip_bit_for_bit(values):
    values = np.array(values, dtype=np.float64)
    ts = 1.7e9 + np.arange(len(values), dtype=np.float64)
    _, back = chunks.decode(chunks.encode(ts, values))
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))


def test_nan_payloads_and_sign_come_back_bit_for_bit():
    values = np.array([0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001, 0x8000000000000001],
                      dtype=np.uint64).view(np.float64)
    _, back = chunks.decode(chunks.encode(1.7e9 + np.arange(4.0), values))
    assert np.array_equal(back.view(np.uint64), values.view(np.uint64))
