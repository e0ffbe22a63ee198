"""The pieces of held ACKs: ranges merged into as few as they make, and a child's
``ack_every`` taken from its HELLO only when it is a sane number of seconds."""

from __future__ import annotations

import pytest

from clumon.proto.downlink import _ack_every
from clumon.proto.frames import merge_ranges


def test_ranges_merge_where_they_touch_or_overlap():
    assert merge_ranges([(7, 7), (5, 5), (6, 6), (9, 9)]) == ((5, 7), (9, 9))
    assert merge_ranges([(1, 10), (3, 4), (11, 12), (20, 25), (24, 30)]) == ((1, 12), (20, 30))
    assert merge_ranges([]) == ()


@pytest.mark.parametrize("inventory, every", [
    ({"ack_every": 5.0}, 5.0), ({"ack_every": 2}, 2.0), ({}, 0.0), ({"ack_every": -1}, 0.0),
    ({"ack_every": True}, 0.0), ({"ack_every": "5"}, 0.0), ({"ack_every": 1e9}, 0.0), (None, 0.0),
])
def test_a_child_s_ack_every_is_taken_only_when_sane(inventory, every):
    assert _ack_every(inventory) == every
