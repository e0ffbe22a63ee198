"""Masks at the source: each rule kind at its edges, rule order, change suppression
and max_silence, and the config keys that carry them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clumon.agent.config import AgentConfig
from clumon.agent.masks import Filter
from clumon.proto.maskrules import MaskError, MaskSet, Rule, parse_rule
from clumon.proto.config import ConfigError, from_dict


def only(rules: list[str], **kw) -> Filter:
    return Filter(MaskSet.from_texts(rules, **kw))


# --- parsing -------------------------------------------------------------------------


def test_rule_texts_parse_and_print_back():
    for text in ["10 node_uptime_seconds U", "20 node_top_* B 0.01 1", "30 x{mount=\"/a b\"} drop",
                 "40 y B -5 5", "50 z B -1.5 2.25"]:
        assert parse_rule(text).text() == text
    assert parse_rule("20 n B 0 1") == Rule(20, "n", "B", 0.0, 1.0)
    assert parse_rule('7 d{mount="/scratch space"} drop').glob == 'd{mount="/scratch space"}'


@pytest.mark.parametrize("text", ["", "10", "10 x", "x y U", "10 x Q", "10 x B 1", "10 x B a 2",
                                  "10 x B 2 1", "10 x B nan 1", "-1 x U", "10 x b 0 1"])
def test_bad_rules_say_what_was_expected(text):
    with pytest.raises(MaskError, match="expected|must"):
        parse_rule(text)


def test_rule_numbers_are_unique_and_order_rules():
    with pytest.raises(MaskError, match="unique"):
        MaskSet.from_texts(["10 a U", "10 b drop"])
    m = MaskSet.from_texts(["90 * drop", "10 node_load* U"])
    assert [r.number for r in m.rules] == [10, 90]
    assert m.rule_for("node_load1").kind == "U" and m.rule_for("node_other").kind == "drop"
    assert MaskSet.from_dict(m.as_dict()) == m


@pytest.mark.parametrize("key", ["min_change", "min_change_abs", "max_silence"])
def test_suppression_settings_must_be_finite_and_not_negative(key):
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(MaskError, match=key):
            MaskSet(**{key: bad})


# --- mask kinds at their edges ---------------------------------------------------------


def test_unbounded_passes_everything_including_missing():
    f = only(["10 x U"], max_silence=0)
    for v in (-1e300, 0.0, 1e300, None):
        assert f.apply({"x": v}, 0.0) == {"x": v}


def test_bounded_passes_only_inside_the_closed_interval():
    f = only(["10 x B 0 100"], max_silence=0)
    inside = [0.0, 1e-12, 50.0, 100.0]
    outside = [-1e-12, 100.0000001, -5.0, 1e9, None]
    for v in inside:
        assert f.apply({"x": v}, 0.0) == {"x": v}, v
    for v in outside:
        assert f.apply({"x": v}, 0.0) == {}, v


def test_drop_never_passes_and_unmatched_series_pass():
    f = only(["10 node_cpu_* drop"], max_silence=0)
    out = f.apply({"node_cpu_seconds_total": 5.0, "node_load1": 0.5}, 0.0)
    assert out == {"node_load1": 0.5}


def test_the_lowest_numbered_matching_rule_wins():
    f = only(["20 node_* drop", "10 node_load1 U"], max_silence=0)
    assert f.apply({"node_load1": 1.0, "node_load5": 1.0}, 0.0) == {"node_load1": 1.0}
    f = only(["10 node_* drop", "20 node_load1 U"], max_silence=0)
    assert f.apply({"node_load1": 1.0}, 0.0) == {}


def test_a_value_back_inside_its_bounds_is_sent_at_once():
    f = only(["10 x B 0 10"])
    assert f.apply({"x": 5.0}, 0.0) == {"x": 5.0}
    assert f.apply({"x": 50.0}, 1.0) == {}
    # same value as last sent, well within max_silence: still sent, it had left the range
    assert f.apply({"x": 5.0}, 2.0) == {"x": 5.0}


# --- change suppression ----------------------------------------------------------------


def test_relative_change_threshold_at_its_edge():
    f = only([])  # 0.1 % relative
    assert f.apply({"x": 1000.0}, 0.0) == {"x": 1000.0}
    assert f.apply({"x": 1001.0}, 1.0) == {}          # exactly 0.1 %: not more
    assert f.apply({"x": 999.0}, 2.0) == {}
    assert f.apply({"x": 1001.001}, 3.0) == {"x": 1001.001}
    # compared with the value last *sent*, so a slow drift is sent once it adds up
    for i, v in enumerate([1001.5, 1002.0]):
        f.apply({"x": v}, 4.0 + i)
    assert f.apply({"x": 1002.1}, 6.0) == {"x": 1002.1}


def test_absolute_floor_near_zero():
    f = only([])
    assert f.apply({"x": 0.0}, 0.0) == {"x": 0.0}
    assert f.apply({"x": 1e-9}, 1.0) == {}
    assert f.apply({"x": 2e-9}, 2.0) == {"x": 2e-9}


def test_missing_and_present_values_are_changes():
    f = only([])
    f.apply({"x": 1.0}, 0.0)
    assert f.apply({"x": None}, 1.0) == {"x": None}
    assert f.apply({"x": None}, 2.0) == {}
    assert f.apply({"x": 1.0}, 3.0) == {"x": 1.0}


def test_max_silence_resends_an_unchanged_value():
    f = only([], max_silence=30.0)
    assert f.apply({"x": 7.0}, 100.0) == {"x": 7.0}
    assert f.apply({"x": 7.0}, 129.9) == {}
    assert f.apply({"x": 7.0}, 130.0) == {"x": 7.0}
    assert f.apply({"x": 7.0}, 131.0) == {}
    assert f.apply({"x": 7.0}, 160.0) == {"x": 7.0}


def test_a_source_read_every_max_silence_is_sent_every_read_though_the_reads_jitter():
    # a 30 s source read a few ms early or late: each read is due, not every other one
    f = only([], max_silence=30.0)
    sent = [t for t in (100.0, 129.996, 160.003, 189.995, 220.0) if f.apply({"x": 7.0}, t)]
    assert sent == [100.0, 129.996, 160.003, 189.995, 220.0]


def test_zero_max_silence_sends_every_value_every_time():
    f = only([], max_silence=0)
    for t in range(3):
        assert f.apply({"x": 7.0, "y": None}, float(t)) == {"x": 7.0, "y": None}


def test_replacing_masks_sends_everything_that_passes_afresh():
    f = only([])
    f.apply({"x": 1.0, "y": 2.0}, 0.0)
    assert f.apply({"x": 1.0, "y": 2.0}, 1.0) == {}
    f.replace(MaskSet.from_texts(["10 y drop"]))
    assert f.apply({"x": 1.0, "y": 2.0}, 2.0) == {"x": 1.0}


# --- configuration -----------------------------------------------------------------------


def test_masks_load_from_the_agent_config():
    cfg = from_dict(AgentConfig, {"masks": {"rules": ["10 node_load* U", "90 * drop"], "max_silence": 60}})
    m = cfg.masks.mask_set()
    assert m.max_silence == 60.0 and [r.number for r in m.rules] == [10, 90]
    assert AgentConfig().masks.mask_set() == MaskSet()


@pytest.mark.parametrize("masks, key", [
    ({"rules": ["10 x U", "oops"]}, "masks.rules[1]"),
    ({"rules": ["10 x U", "10 y U"]}, "masks.rules"),
    ({"min_change": -0.5}, "masks.min_change"),
    ({"max_silence": -1}, "masks.max_silence"),
    ({"rules": "10 x U"}, "masks.rules"),
    ({"colour": "red"}, "masks.colour"),
])
def test_bad_mask_config_names_the_key(masks, key):
    with pytest.raises(ConfigError) as info:
        from_dict(AgentConfig, {"masks": masks}, "agent.toml")
    assert f"'{key}'" in str(info.value) and str(info.value).startswith("agent.toml: ")


def test_counters_are_sent_whenever_they_move():
    """A cumulative counter moves by a tiny share of its total each second; rates
    need consecutive values, so only the absolute floor applies to ``_total`` series."""
    f = only([])
    big = 1e6
    f.apply({"node_cpu_seconds_total{mode=\"idle\"}": big, "node_memory_free_bytes": big}, 0.0)
    out = f.apply({"node_cpu_seconds_total{mode=\"idle\"}": big + 2, "node_memory_free_bytes": big + 2}, 1.0)
    assert out == {"node_cpu_seconds_total{mode=\"idle\"}": big + 2}
    assert f.apply({"node_cpu_seconds_total{mode=\"idle\"}": big + 2}, 2.0) == {}, "a still counter is suppressed"


# --- the column filter against the plain per-name reading of DESIGN.md ----------------


class ReferenceFilter:
    """DESIGN.md's masks and change suppression, one name at a time, as simply as it
    can be said: what ``Filter`` must do, whatever it keeps by position."""

    def __init__(self, masks: MaskSet):
        self.masks = masks
        self.sent: dict[str, tuple[float | None, float]] = {}

    def apply(self, names, values, now):
        m, out = self.masks, []
        for name, v in zip(names, values):
            rule = m.rule_for(name)
            if rule is not None and not rule.passes(v):
                self.sent.pop(name, None)
                continue
            last = self.sent.get(name)
            if last is not None and now - last[1] < m.max_silence - 0.05:
                old = last[0]
                if old is None or v is None:
                    if old is v:
                        continue
                else:
                    counter = name.split("{")[0].endswith("_total")
                    limit = m.min_change_abs if counter else max(m.min_change * abs(old), m.min_change_abs)
                    if abs(v - old) <= limit:
                        continue
            self.sent[name] = (v, now)
            out.append((name, v))
        return out


NAMES = ["a", "b_total", "c_ratio", "d", "e_total{x=\"1\"}"]
values_st = st.sampled_from([None, 0.0, 1.0, 1.0005, 1.002, -3.0, 1e-10, 1e6, 1e6 + 1, 2e6, 2e6 + 1])
layout_st = st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True).map(tuple)
read_st = layout_st.flatmap(lambda names: st.tuples(st.just(names), st.lists(values_st, min_size=len(names),
                                                                                max_size=len(names))))
rules_st = st.sampled_from([[], ["10 a B 0 2"], ["10 d drop", "20 * U"], ["5 c_ratio B -1 0.5", "9 b_total U"]])


@settings(max_examples=600, deadline=None)
@given(rules=rules_st, silence=st.sampled_from([0.0, 3.0, 30.0]),
       steps=st.lists(st.tuples(st.lists(read_st, min_size=1, max_size=3),
                                st.sampled_from([0.5, 1.0, 2.96, 3.1, 10.0]),
                                st.sampled_from(["read", "read", "read", "resend_all", "forget a", "replace"])),
                      min_size=1, max_size=25))
def test_filter_judges_as_the_per_name_reference(rules, silence, steps):
    """Reads of changing layouts (a series moving between them, as when an interface
    comes), missing values, rules, max_silence, forgetting and mask changes: the
    column filter sends exactly what the per-name reading of the rules sends."""
    masks = MaskSet.from_texts(rules, max_silence=silence)
    f, ref = Filter(masks), ReferenceFilter(masks)
    now = 0.0
    for parts, dt, action in steps:
        now += dt
        if action == "resend_all":
            f.resend_all()
            ref.sent.clear()
        elif action == "forget a":
            f.forget(["a"])
            ref.sent.pop("a", None)
        elif action == "replace":
            f.replace(masks)
            ref.sent.clear()
        names, values = f.apply_columns(parts, now)
        expected = [item for n, v in parts for item in ref.apply(n, v, now)]
        assert list(zip(names, values)) == expected


def test_a_layout_that_changes_carries_on_where_its_series_were():
    f = only([])
    assert f.apply_columns([(("a", "b"), [1.0, 2.0])], 0.0) == (["a", "b"], [1.0, 2.0])
    # a new series joins (a new interface): only it is sent
    assert f.apply_columns([(("a", "b", "c"), [1.0, 2.0, 3.0])], 1.0) == (["c"], [3.0])
    assert f.apply_columns([(("a", "b", "c"), [1.0, 2.5, 3.0])], 2.0) == (["b"], [2.5])
    # the old layout again: it must not judge against what it held before
    assert f.apply_columns([(("a", "b"), [1.0, 2.5])], 3.0) == ([], [])


def test_a_series_missing_for_good_is_judged_and_suppressed():
    """swap's used ratio with no swap configured: None every read, sent once."""
    f = only([])
    names = ("node_swap_size_bytes", "node_swap_used_ratio")
    assert f.apply_columns([(names, [0.0, None])], 0.0) == (list(names), [0.0, None])
    for t in range(1, 5):
        assert f.apply_columns([(names, [0.0, None])], float(t)) == ([], [])
    assert f.apply_columns([(names, [8.0, 0.5])], 5.0) == (list(names), [8.0, 0.5])
    assert f.apply_columns([(names, [8.0, 0.5])], 6.0) == ([], [])


def test_a_counter_sent_by_the_column_path_keeps_its_absolute_threshold():
    f = only([])
    names = ("node_forks_total", "node_memory_free_bytes")
    f.apply_columns([(names, [1.0, 1e6])], 0.0)         # first read: judged value by value
    assert f.apply_columns([(names, [1e6, 1e6])], 1.0) == (["node_forks_total"], [1e6])
    # judged by columns against what was sent at 1.0: a counter moves by 1 of 1e6
    assert f.apply_columns([(names, [1e6 + 1, 1e6 + 1])], 2.0) == (["node_forks_total"], [1e6 + 1])
