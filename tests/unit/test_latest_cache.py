"""The latest-values cache: a new dictionary of the same incarnation keeps the
newest value of each series it still names; a new incarnation starts afresh."""

from __future__ import annotations

from clumon.proto.frames import Data, Hello, make
from clumon.proto.tree import LatestCache

INC = 1_700_000_000_000_000_000


def test_a_new_dictionary_keeps_values_by_name_a_new_incarnation_does_not():
    cache = LatestCache()
    cache.hello(make("n1", INC, 100.0, Hello(1, ("a", "b"), {}), 1))
    assert cache.data(make("n1", INC, 100.0, Data.from_values(1, [1.0, 2.0]), 2))
    # a mount came: version 2 names b, c; only c is sent (b did not change)
    cache.hello(make("n1", INC, 101.0, Hello(2, ("b", "c"), {}), 3))
    assert cache.data(make("n1", INC, 101.0, Data.from_values(2, [3.0], [1]), 4))
    assert cache.latest("n1") == {"b": (2.0, 100.0), "c": (3.0, 101.0)}
    # a restart (new incarnation) keeps nothing of the old one
    cache.hello(make("n1", INC + 1, 102.0, Hello(1, ("b", "c"), {}), 1))
    assert cache.data(make("n1", INC + 1, 102.0, Data.from_values(1, [5.0], [1]), 2))
    assert cache.latest("n1") == {"c": (5.0, 102.0)}
