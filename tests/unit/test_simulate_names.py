"""The simulated agents' series names: sorted as an agent's dictionary is, every
counter before every gauge (the simulator's column slices rely on it), and with
``node_series`` four gauges under the names the overview ranks nodes by."""

from __future__ import annotations

import pytest

from clumon.cli.simulate import NODE_SERIES, series_names


@pytest.mark.parametrize("node_series", [False, True])
@pytest.mark.parametrize("n,share", [(20, 0.25), (150, 0.25), (5, 0.0), (4, 1.0), (1, 0.25)])
def test_counters_come_first_and_the_names_are_sorted_and_unique(n, share, node_series):
    names, counters = series_names(n, share, node_series)
    assert len(names) == len(counters) == n == len(set(names))
    assert names == sorted(names)
    k = sum(counters)
    assert counters == [True] * k + [False] * (n - k)
    assert all(name.endswith("_total") for name in names[:k])


def test_node_series_are_the_overviews_names():
    names, counters = series_names(20, 0.25, node_series=True)
    gauges = {name for name, c in zip(names, counters) if not c}
    assert set(NODE_SERIES) <= gauges
    plain, _ = series_names(20, 0.25)
    assert not set(NODE_SERIES) & set(plain)  # off by default: other benches' names as before
