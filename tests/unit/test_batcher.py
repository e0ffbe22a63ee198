"""The aggregator's batcher: a BATCH never exceeds the parent's frame limit, and
every frame is either in exactly one BATCH or counted as not sent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clumon.aggregator.batcher import Batcher
from clumon.proto import codec
from clumon.proto.frames import Kind


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 1200), max_size=60), limit=st.integers(200, 1500),
       max_frames=st.integers(1, 50), name=st.text(min_size=1, max_size=40))
def test_batches_stay_under_the_limit_and_lose_no_frame(sizes, limit, max_frames, name):
    sent: list[bytes] = []
    b = Batcher(name, 1, lambda data: sent.append(data) or True, max_frames, 10.0, limit // 2, limit)
    frames = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    for f in frames:
        b.add(f)
    b.flush()
    carried = []
    for data in sent:
        assert len(data) <= limit, (len(data), limit)
        frame = codec.decode(data, limit)
        assert frame.kind is Kind.BATCH
        carried.extend(frame.body.frames)
    assert len(carried) + b.frames_unsent == len(frames)
    assert carried == [f for f in frames if f in carried]  # in order, none twice
    assert b.frames_out == len(carried)
