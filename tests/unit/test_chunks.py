"""Chunk format: lossless round trips and refusal of damaged input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clumon.root import chunks

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


@pytest.mark.parametrize("bad", [b"", b"\x02abc", b"\x01not zstd", b"\x01" + chunks._compressor.compress(b"short")])
def test_damaged_chunks_raise_chunk_error(bad):
    with pytest.raises(chunks.ChunkError):
        chunks.decode(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_chunk_error(junk):
    try:
        chunks.decode(b"\x01" + chunks._compressor.compress(junk))
    except chunks.ChunkError:
        pass
