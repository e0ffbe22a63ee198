"""The sampler on the column path (``collect_columns``): the same reading as from
``Sample``s, the dictionary kept while the names stay, non-finite values and
``_ratio`` rounding by position, and the snapshot sync reads are served from."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from clumon.agent.collectors import Sample
from clumon.agent.collectors.base import Layout, as_samples
from clumon.agent.sampler import Sampler
from clumon.agent.shared_reads import SharedReads


class Columns:
    """Hands out the columns it is given; names through a Layout, as built-ins do."""

    name = "cols"
    default_interval = 1.0

    def __init__(self) -> None:
        self.layout = Layout()
        self.pairs: list[tuple[str, float | None]] = []

    def collect_columns(self):
        return self.layout([n for n, _ in self.pairs]), [v for _, v in self.pairs]

    def collect(self) -> list[Sample]:
        return as_samples(self.collect_columns())


class Samples(Columns):
    """The same values as Samples only (a plugin's way)."""

    collect_columns = None  # type: ignore[assignment]

    def collect(self) -> list[Sample]:
        return [Sample(n, v) for n, v in self.pairs]


PAIRS = [
    ("node_memory_used_ratio", 0.123456789),
    ('node_cpu_ratio{mode="idle"}', math.nan),
    ("node_load1", math.inf),
    ('node_thing{kind="x_ratio"}', 0.123456789),
    ("node_forks_total", 12345.0),
    ("node_gone", None),
]


@pytest.mark.parametrize("kind", [Columns, Samples])
def test_columns_and_samples_give_the_same_reading(kind):
    src = kind()
    src.pairs = list(PAIRS)
    sampler = Sampler([src], 1.0, ratio_digits=5)
    reading = sampler.read_all()
    assert reading.values == {
        "node_memory_used_ratio": 0.12346,
        'node_cpu_ratio{mode="idle"}': None,  # not finite: missing
        "node_load1": None,
        'node_thing{kind="x_ratio"}': 0.123456789,  # a label value is not the name
        "node_forks_total": 12345.0,
        "node_gone": None,
    }
    assert reading.dictionary_changed and sampler.dictionary.version == 1


def test_a_finite_read_is_kept_as_it_came_and_ratios_round_by_position():
    src = Columns()
    src.pairs = [("a_ratio", 0.333333333), ("b", 1e300), ("c", 1e300), ("d_ratio", None)]
    sampler = Sampler([src], 1.0, ratio_digits=3)
    assert sampler.read_all().values == {"a_ratio": 0.333, "b": 1e300, "c": 1e300, "d_ratio": None}
    # the order of the series changes: positions are found again
    src.pairs = [("d_ratio", 0.98765), ("a_ratio", 0.111111), ("b", 2.0), ("c", -math.inf)]
    reading = sampler.read_all()
    assert reading.values == {"d_ratio": 0.988, "a_ratio": 0.111, "b": 2.0, "c": None}
    assert not reading.dictionary_changed, "same names in another order: same dictionary"


def test_the_dictionary_changes_only_when_the_names_do():
    src = Columns()
    src.pairs = [("a", 1.0), ("b", 2.0)]
    sampler = Sampler([src], 1.0)
    sampler.read_all()
    names = src.layout.names
    src.pairs = [("a", 3.0), ("b", 4.0)]
    assert not sampler.read_all().dictionary_changed
    assert src.layout.names is names, "the same names: the same tuple, compared by identity"
    old = sampler.dictionary
    src.pairs = [("a", 3.0), ("c", 4.0)]
    reading = sampler.read_all()
    assert reading.dictionary_changed and reading.gone == ("b",)
    assert sampler.dictionary.names == ["a", "c"] and sampler.dictionary.version == 2
    # replaced whole, never changed in place: a publish holding the old one on the
    # loop keeps version, names and positions that belong together
    assert old.version == 1 and old.names == ["a", "b"] and old.position == {"a": 0, "b": 1}


def test_sync_reads_and_the_snapshot_see_the_values_as_taken():
    src = Columns()
    src.pairs = [("node_memory_used_ratio", 0.123456789), ("x", math.nan)]
    sampler = Sampler([src], 1.0, ratio_digits=5)
    executor = ThreadPoolExecutor(1)
    reads = SharedReads(sampler, executor, lambda r: None)

    async def main():
        await reads.read(sampler.sources)
        return await reads.answer(["node_*", "x"], 60.0)

    answer = asyncio.run(main())
    executor.shutdown()
    value, ts, age, live = answer["values"]["node_memory_used_ratio"]
    assert value == 0.12346 and ts == sampler.sources[0].last_read and age >= 0 and live is False
    assert answer["values"]["x"][0] is None
    assert sampler.snapshot == {"node_memory_used_ratio": (0.12346, ts), "x": (None, ts)}
    assert sampler.latest() == {"node_memory_used_ratio": 0.12346, "x": None}


def test_data_columns_come_in_dictionary_order_without_unknown_or_repeated_names():
    from clumon.agent.sampler import SeriesDictionary

    d = SeriesDictionary()
    d.rebuild(["a", "b", "c", "d"])
    assert d.columns_of(["a", "b", "c", "d"], [1.0, 2.0, 3.0, None]) == (None, [1.0, 2.0, 3.0, None])
    # every series, read in another order: still the full frame, in order
    assert d.columns_of(["d", "b", "a", "c"], [4.0, 2.0, 1.0, 3.0]) == (None, [1.0, 2.0, 3.0, 4.0])
    assert d.columns_of(["c", "zz", "a", "c"], [3.0, 9.0, 1.0, 3.5]) == ([0, 2], [1.0, 3.5])
    assert d.columns({"c": 3.0, "a": None}) == ([0, 2], [None, 3.0])


def test_the_filter_on_columns_masks_and_suppresses_across_the_parts_of_a_reading():
    from clumon.agent.masks import Filter
    from clumon.proto.maskrules import MaskSet

    f = Filter(MaskSet.from_texts(["10 b B 0 10", "20 c drop"], max_silence=30.0))
    reads = [
        ({"a": 1.0, "b": 5.0, "c": 1.0, "n_total": 10.0}, {"a": 1.0, "b": 5.0, "n_total": 10.0}),
        # a: a change below 0.1 %; b: out of its bounds; n_total: a counter that moved
        ({"a": 1.0000001, "b": 50.0, "c": 2.0, "n_total": 10.5}, {"n_total": 10.5}),
        # b is back in bounds: sent at once, though equal to what was last sent
        ({"a": 2.0, "b": 5.0, "c": 3.0, "n_total": 10.5}, {"a": 2.0, "b": 5.0}),
    ]
    for t, (values, expected) in enumerate(reads):
        names, vals = tuple(values), list(values.values())
        parts = [(names[:2], vals[:2]), (names[2:], vals[2:])]  # two sources
        got_names, got_values = f.apply_columns(parts, float(t))
        assert dict(zip(got_names, got_values)) == expected
        assert got_names == [n for n in names if n in expected], "in the order read"
    assert (f.passed, f.masked, f.suppressed) == (6, 4, 2)
