"""The ``cluster`` op over the latest-values cache: several clusters, several
sources, staleness and errors, and a cluster nobody reports (no database: the
op reads only the live view)."""

from __future__ import annotations

import asyncio

import pytest

from clumon.agent.collectors.base import series
from clumon.proto.frames import Data, Hello, make
from clumon.proto.tree import LatestCache
from clumon.root.ops.base import QueryError
from clumon.root.ops.sched import SchedOps
from clumon.root.registry import Registry


def report(cache: LatestCache, registry: Registry, node: str, ts: float, values: dict[str, float]) -> None:
    names = tuple(values)
    registry.hello(node, "", 1, ts, "agent", {})
    cache.hello(make(node, 1, ts, Hello(1, names), seq=0))
    cache.data(make(node, 1, ts, Data.from_values(1, list(values.values())), seq=1))


def figures(cluster: str, used: float, stale: float = 0.0, errors: float = 0.0) -> dict[str, float]:
    out = {}
    for partition in ("", "batch"):
        labels = {"cluster": cluster, "partition": partition}
        out[series("sched_cores", **labels, state="used")] = used
        out[series("sched_cores", **labels, state="total")] = 40.0
        out[series("sched_nodes", **labels, state="idle")] = 2.0
        out[series("sched_utilization_ratio", **labels)] = used / 40
    out[series("sched_stale", cluster=cluster)] = stale
    out[series("clumon_sched_errors_total", cluster=cluster)] = errors
    out["node_load1"] = 0.5  # not a scheduler figure: left out
    return out


def test_the_newest_source_of_each_cluster_wins_and_staleness_shows():
    registry, cache = Registry(), LatestCache()
    report(cache, registry, "login-a", 100.0, figures("c1", 10.0))
    report(cache, registry, "login-b", 200.0, figures("c1", 20.0, stale=1.0, errors=3.0))
    report(cache, registry, "head-2", 150.0, figures('odd"name', 30.0))
    ops = SchedOps(registry, cache, None)
    got = asyncio.run(ops.cluster({}))
    assert [c["cluster"] for c in got] == ["c1", 'odd"name']
    c1, odd = got
    assert (c1["source"], c1["stale"], c1["errors"], c1["ts"]) == ("login-b", True, 3, 200.0)
    assert c1["partitions"][""]["cores"] == {"used": 20.0, "total": 40.0}
    assert c1["partitions"]["batch"]["utilization"] == 0.5 and c1["partitions"]["batch"]["nodes"] == {"idle": 2.0}
    assert odd["source"] == "head-2" and odd["stale"] is False and odd["errors"] == 0
    only = asyncio.run(ops.cluster({"cluster": 'odd"name'}))
    assert [c["cluster"] for c in only] == ['odd"name']
    with pytest.raises(QueryError) as exc:
        asyncio.run(ops.cluster({"cluster": "c9"}))
    assert exc.value.code == "unknown_cluster" and "c1" in exc.value.message
