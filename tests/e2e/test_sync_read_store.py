"""A sync read answers with fresh values but stores no extra sample.

The schedule stores one sample of a 1 s source a second; reads in between
(``clumon read``) must not add a second stored point in the same tick nor move
the schedule's phase.
"""

from __future__ import annotations

import time

from harness import wait_for

from clumon.cli.client import Client

SERIES = ('node_cpu_ratio{mode="user"}', "node_load1", "node_memory_available_bytes")


def _points(c: Client, name: str) -> list[float]:
    got = c.call("series", node="node-1", series=name, since=600.0, tier="raw")
    return [p[0] for p in got["points"]]


def test_sync_reads_between_ticks_store_no_extra_points(tree):
    root = tree.root(commit_interval=0.2)
    # every value is sent at every tick, so the stored points are the schedule's ticks
    tree.agent("node-1", [root.port], masks={"max_silence": 0.0, "min_change": 0.0, "min_change_abs": 0.0})
    with Client(root.query) as c:
        wait_for(lambda: len(_points(c, "node_load1")) >= 2, what="node-1's first points")
        reads = 0
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline and reads < 40:
            got = c.call("read", targets=["node-1"], max_age=0)
            assert got["nodes"]["node-1"]["live"] is True
            reads += 1
            time.sleep(0.13)
        time.sleep(1.5)  # the last ticks reach the database
        got = {name: _points(c, name) for name in SERIES}
        for name, ts in got.items():
            assert len(ts) >= 6, (name, ts)
            gaps = [b - a for a, b in zip(ts, ts[1:])]
            # one point per 1 s tick: never two within a tick
            assert min(gaps) > 0.8, (name, reads, [round(g, 3) for g in gaps])
            if "ratio" not in name:  # (a ratio over a window with no CPU tick counted is None)
                # and the schedule's phase kept: no tick skipped
                assert max(gaps) < 1.6, (name, reads, [round(g, 3) for g in gaps])
