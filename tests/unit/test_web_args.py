"""The HTTP API's own part, pure: query-string arguments typed by name, the bounds
checked before an op runs, JSON without NaN, and where a login may send you."""

from __future__ import annotations

import json
import math
import time

import pytest
from multidict import MultiDict

from clumon.root.ops import QueryError
from clumon.root.web.api import MAX_POINTS, args_from_query, bound, dumps, error, seconds
from clumon.root.web.auth import safe_next


@pytest.mark.parametrize("text,value", [("90", 90.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0),
                                        ("2h", 7200.0), ("1d", 86400.0), ("1w", 604800.0), ("1.5h", 5400.0)])
def test_durations(text, value):
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["", "5x", "m5", "nan", "inf", "1d2h"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        seconds(text)


def test_arguments_are_typed_by_their_names():
    q = MultiDict([("node", "123"), ("since", "1d"), ("until", "1700000000"), ("step", "60"), ("limit", "20"),
                   ("states", "up,down"), ("force", "true"), ("tier", "1m")])
    assert args_from_query("series", q) == {"node": "123", "since": 86400.0, "until": 1700000000.0, "step": 60.0,
                                            "limit": 20, "states": ["up", "down"], "force": True, "tier": "1m"}


def test_series_is_a_list_for_latest_and_a_name_for_series():
    assert args_from_query("latest", MultiDict(series="a,b")) == {"series": ["a", "b"]}
    assert args_from_query("latest", MultiDict([("series", "a"), ("series", "b,c")])) == {"series": ["a", "b", "c"]}
    assert args_from_query("series", MultiDict(series="node_cpu_ratio{mode=\"idle\"}")) == {
        "series": 'node_cpu_ratio{mode="idle"}'}
    assert args_from_query("job", MultiDict(id="00123")) == {"id": "00123"}
    assert args_from_query("alerts", MultiDict(id="7")) == {"id": 7}


@pytest.mark.parametrize("name,text,words", [("limit", "ten", ["limit", "integer"]), ("since", "yesterday", ["since"]),
                                             ("force", "maybe", ["true or false"]), ("step", "x", ["step"])])
def test_bad_arguments_are_bad_args_in_one_line(name, text, words):
    with pytest.raises(QueryError) as got:
        args_from_query("events", MultiDict({name: text}))
    assert got.value.code == "bad_args" and "\n" not in got.value.message
    assert all(w in got.value.message for w in words)


def test_bounds():
    bound("series", {"since": 3600.0, "tier": "raw"})
    bound("series", {"since": 30 * 86400.0})  # no tier or step: the store picks a coarse one
    bound("events", {"limit": 5000})
    for op, args, words in (("events", {"limit": 5001}, "at most 5000"),
                            ("series", {"since": 30 * 86400.0, "tier": "raw"}, "coarser tier"),
                            ("series", {"since": 365 * 86400.0, "tier": "1m"}, "coarser tier"),
                            ("series", {"since": 86400.0, "step": 1}, "step of at least"),
                            ("series", {"since": 3600.0, "until": 7200.0}, "empty")):
        with pytest.raises(QueryError) as got:
            bound(op, args)
        assert got.value.code == "bad_args" and words in got.value.message
    now = time.time()
    bound("series", {"since": now - MAX_POINTS, "until": now, "tier": "raw"})  # absolute times too


def test_json_has_no_nan():
    assert json.loads(dumps({"a": [1.0, math.nan, math.inf], "b": {"c": -math.inf}})) == {
        "a": [1.0, None, None], "b": {"c": None}}
    assert dumps({"ok": True}) == b'{"ok":true}'


def test_error_statuses():
    assert error("bad_args", "x")[0] == 400
    assert error("forbidden", "x")[0] == 403
    assert error("unknown_op", "x")[0] == 404
    assert error("something_new", "x") == (400, {"ok": False, "error": {"code": "something_new", "message": "x"}})


@pytest.mark.parametrize("target,where", [("/node/n1?range=1w", "/node/n1?range=1w"), ("//evil.example/", "/"),
                                          ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/"),
                                          (None, "/")])
def test_a_login_goes_back_to_this_site_only(target, where):
    assert safe_next(target) == where
