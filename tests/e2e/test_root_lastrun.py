"""A root that did not stop cleanly says so: its open rollup buckets were lost,
which must not pass quietly. A clean stop says nothing."""

from __future__ import annotations

from harness import kill9, restart, wait_for

from clumon.cli.client import Client


def _incomplete(query: str) -> list[dict]:
    with Client(query) as c:
        return [e for e in c.call("events", kind="rollups_incomplete") if e["subject"] == "root"]


def _own_frames_stored(query: str) -> bool:
    with Client(query) as c:
        return c.call("health")["own_frames_stored"] >= 2


def test_kill9_is_reported_at_the_next_start_and_a_clean_stop_is_not(tree, tmp_path):
    root = tree.root()
    wait_for(lambda: _own_frames_stored(root.query), what="the root storing its own frames")
    assert (tmp_path / "root" / "running").exists()

    # a clean stop writes the rollups and removes the marker: nothing to report
    assert root.stop() == 0
    assert not (tmp_path / "root" / "running").exists()
    root = restart(tree, root)
    wait_for(lambda: _own_frames_stored(root.query), what="the restarted root storing its own frames")
    assert _incomplete(root.query) == []

    # killed: the next run stores one event saying the rollups before it lack samples
    kill9(root)
    root = restart(tree, root)
    got = wait_for(lambda: _incomplete(root.query), what="a rollups_incomplete event")
    assert len(got) == 1 and "raw data is complete" in got[0]["message"]
    assert got[0]["attrs"]["previous_start"] > 0
    assert "did not stop cleanly" in (tmp_path / "root.log").read_text()
