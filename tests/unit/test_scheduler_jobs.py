"""What the scheduler source tells the root about jobs (pure: no agent, no root),
and series names read back into metric and labels."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clumon.agent.collectors.base import series
from clumon.agent.scheduler.jobs import CHUNK, FIELDS, JobTracker, as_list
from clumon.agent.scheduler.snapshot import Job, Snapshot
from clumon.proto.seriesname import parse
from clumon.root.storage.jobs import FIELDS as ROOT_FIELDS


def job(i: int, state: str = "running") -> Job:
    return Job(str(i), f"u{i % 7}", f"a{i % 3}", ("batch",), state, state.upper(), (f"n{i % 5}",), 4,
               1000.0, 1010.0 if state == "running" else None, None)


def test_a_large_first_poll_goes_in_chunks_and_only_the_last_says_so():
    tracker = JobTracker("c1", "login1")
    events = tracker.events(Snapshot((), tuple(job(i) for i in range(2 * CHUNK + 1))), 5000.0)
    assert [len(e.attrs["jobs"]) for e in events] == [CHUNK, CHUNK, 1]
    assert [e.attrs["last"] for e in events] == [False, False, True]
    assert all(e.attrs["sync"] and e.attrs["polled"] == 5000.0 and e.type == "sched_jobs" for e in events)


def test_a_sync_comes_again_after_sync_every_and_after_forget():
    tracker = JobTracker("c1", "login1", sync_every=100.0)
    snap = Snapshot((), (job(1),))
    assert tracker.events(snap, 0.0)[0].attrs["sync"]
    assert tracker.events(snap, 50.0) == []
    again = tracker.events(snap, 100.0)
    assert again and again[0].attrs["sync"] and len(again[0].attrs["jobs"]) == 1
    tracker.forget()
    assert tracker.events(snap, 101.0)[0].attrs["sync"]


def test_an_empty_cluster_still_syncs_so_the_root_can_end_what_it_holds():
    events = JobTracker("c1", "login1").events(Snapshot((), ()), 1.0)
    assert len(events) == 1 and events[0].attrs["jobs"] == [] and events[0].attrs["last"]


def test_a_job_that_left_the_listing_is_sent_once_as_gone_and_a_finished_one_not_again():
    tracker = JobTracker("c1", "login1")
    tracker.events(Snapshot((), (job(1), job(2, "finished"))), 10.0)
    sent = tracker.events(Snapshot((), ()), 20.0)
    rows = {r[0]: r for e in sent for r in e.attrs["jobs"]}
    assert set(rows) == {"1"}  # job 2 had already been sent finished
    assert rows["1"][4:6] == ["finished", "GONE"] and rows["1"][10] == 20.0
    assert tracker.events(Snapshot((), ()), 30.0) == []


def test_the_field_order_is_the_roots():
    assert len(FIELDS) == len(ROOT_FIELDS) and FIELDS[:3] == ROOT_FIELDS[:3]
    assert as_list(job(3)) == ["3", "u3", "a0", "batch", "running", "RUNNING", "n3", 4, 1000.0, 1010.0, None]


label_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
       st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), label_values, max_size=4))
def test_series_names_read_back_as_written(metric, labels):
    assert parse(series(metric, **labels)) == (metric, labels)


def test_what_is_not_a_series_name_is_none():
    for bad in ("", "x{", '{a="b"}', 'm{a=b}', 'm{a="b"', 'm{a="b",,}', 'm{a="b"}x'):
        assert parse(bad) is None, bad
