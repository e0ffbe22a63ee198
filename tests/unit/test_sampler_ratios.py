"""The agent rounds its ``_ratio`` series where samples become values, before
change suppression (``ratio_digits``)."""

from __future__ import annotations

import pytest

from clumon.agent.collectors import Sample
from clumon.agent.config import AgentConfig
from clumon.agent.masks import Filter
from clumon.proto.maskrules import MaskSet
from clumon.agent.sampler import Sampler
from clumon.proto.config import ConfigError, from_dict


class Fixed:
    """A collector handing out the values it is given, read after read."""

    name = "fixed"
    default_interval = 1.0

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}

    def collect(self) -> list[Sample]:
        return [Sample(n, v) for n, v in self.values.items()]


def read(sampler: Sampler, source: Fixed, values: dict) -> dict:
    source.values = values
    return sampler.read_all().values


def test_ratios_are_rounded_and_other_series_keep_every_bit():
    src = Fixed()
    sampler = Sampler([src], 1.0, ratio_digits=5)
    got = read(sampler, src, {
        "node_memory_used_ratio": 0.123456789,
        'node_disk_used_ratio{mount="/"}': 0.987654321,
        'node_thing{kind="x_ratio"}': 0.123456789,  # a label value is not the name
        "node_load1": 0.123456789,
        "node_cpu_ratio_missing": None,
    })
    assert got == {
        "node_memory_used_ratio": 0.12346,
        'node_disk_used_ratio{mount="/"}': 0.98765,
        'node_thing{kind="x_ratio"}': 0.123456789,
        "node_load1": 0.123456789,
        "node_cpu_ratio_missing": None,
    }
    assert sampler.snapshot["node_memory_used_ratio"][0] == 0.12346  # sync reads see the same value


def test_zero_digits_keep_every_bit():
    src = Fixed()
    sampler = Sampler([src], 1.0, ratio_digits=0)
    assert read(sampler, src, {"node_memory_used_ratio": 0.123456789}) == {"node_memory_used_ratio": 0.123456789}


@pytest.mark.parametrize("digits, sent", [(5, 1), (0, 2)])
def test_a_wobble_below_the_digits_is_not_a_change(digits, sent):
    src = Fixed()
    sampler = Sampler([src], 1.0, ratio_digits=digits)
    masks = Filter(MaskSet.from_texts([]))  # default change suppression
    passed = 0
    for i, v in enumerate((0.0000012, 0.0000031)):  # near zero: above the absolute floor
        passed += len(masks.apply(read(sampler, src, {"node_cpu_ratio": v}), float(i)))
    assert passed == sent


def test_the_default_and_bad_values_in_the_config():
    assert AgentConfig().ratio_digits == 5
    assert from_dict(AgentConfig, {"ratio_digits": 0}).ratio_digits == 0
    for bad in (-1, 16, 2.5, True, "5"):
        with pytest.raises(ConfigError, match="ratio_digits"):
            from_dict(AgentConfig, {"ratio_digits": bad})


@pytest.mark.parametrize("digits", [1, 3, 5, 9, 12, 15])
def test_ratios_round_as_round_does(digits):
    """The agent's rounding gives round(v, digits) (the double nearest to the rounded
    decimal) for ratios, however it computes it."""
    import random

    rng = random.Random(digits)
    values = {f"node_x{i}_ratio": rng.random() for i in range(2000)}
    values.update({"node_zero_ratio": 0.0, "node_one_ratio": 1.0, "node_tiny_ratio": 5e-324,
                   "node_huge_ratio": 1.7e308, "node_big_ratio": -3e12})  # no ratio, but a plugin may say so
    src = Fixed()
    sampler = Sampler([src], 1.0, ratio_digits=digits)
    got = read(sampler, src, values)
    assert got == {k: round(v, digits) for k, v in values.items()}
