"""Batch jobs and the utilization tables in a real database (SQLite file and
PostgreSQL): rows from ``sched_jobs`` events, replays, syncs, core-hours and the
daily/monthly report, each against hand-worked numbers."""

from __future__ import annotations

import time

import pytest

from clumon.agent.collectors.base import series
from clumon.root.storage import EventRow, Store
from clumon.root.storage.utilization import period_of
from db_fixtures import pg_schema_url  # noqa: F401
from test_history import INC, MANUAL, data, hello, nodes_rows

T0 = float(int(time.time()) // 86400 * 86400 - 86400)  # yesterday, 00:00 UTC
H = 3600.0


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'root.db'}"
    return request.getfixturevalue("pg_schema_url")


def job(jid, user, state, cores=4, start=None, end=None, nodes="n1", account=None, raw=None):
    return [jid, user, account or f"acct-{user}", "batch", state, raw or state.upper(), nodes, cores,
            T0, start, end]


_seq = iter(range(1, 10**9))


def jobs_event(jobs, polled, cluster="c1", sync=False, last=True, source="login1"):
    attrs = {"cluster": cluster, "polled": polled, "jobs": jobs, "last": last}
    if sync:
        attrs["sync"] = True
    return EventRow(polled, source, "sched_jobs", "jobs", attrs, source, INC, next(_seq))


def test_jobs_are_upserted_newest_wins_and_replays_change_nothing(url):
    store = Store(url, history=MANUAL)
    store.write([], [], [jobs_event([job("1", "ann", "pending"), job("2", "bob", "running", start=T0)], T0 + 10)])
    store.write([], [], [jobs_event([job("1", "ann", "running", start=T0 + 20, nodes="n1,n2")], T0 + 30)])
    # an old event arriving late (a replay after a failover) is a no-op
    store.write([], [], [jobs_event([job("1", "ann", "pending")], T0 + 10)])
    one = store.job("1")
    assert len(one) == 1
    row = one[0]
    assert (row["state"], row["start_time"], row["nodes"], row["first_seen"], row["last_seen"]) == \
        ("running", T0 + 20, ["n1", "n2"], T0 + 10, T0 + 30)
    assert [j["id"] for j in store.jobs(user="bob")] == ["2"]
    assert [j["id"] for j in store.jobs(node="n2")] == ["1"]
    assert [j["id"] for j in store.jobs(node="n")] == []  # a whole name, not a prefix
    # the events table keeps the count, not the job list (the frame holds that)
    stored = store.events(type="sched_jobs")
    assert stored and all("jobs" not in e.attrs and "count" in e.attrs for e in stored)
    store.close()


def test_a_sync_ends_the_jobs_it_does_not_mention(url):
    store = Store(url, history=MANUAL)
    store.write([], [], [jobs_event([job("1", "ann", "running", start=T0), job("2", "bob", "running", start=T0),
                                     job("3", "cy", "finished", start=T0, end=T0 + 5)], T0 + 10, sync=True)])
    store.write([], [], [jobs_event([job("9", "dee", "running", start=T0)], T0 + 10, cluster="c2", sync=True)])
    # a later sync in two parts: job 1 in the first, nothing else; only the last part ends others
    store.write([], [], [jobs_event([job("1", "ann", "running", start=T0)], T0 + 100, sync=True, last=False)])
    assert store.job("2")[0]["state"] == "running"
    store.write([], [], [jobs_event([], T0 + 100, sync=True, last=True)])
    two = store.job("2")[0]
    assert (two["state"], two["raw_state"], two["end_time"]) == ("finished", "GONE", T0 + 100)
    assert store.job("1")[0]["state"] == "running"
    assert store.job("3")[0]["raw_state"] == "FINISHED" and store.job("3")[0]["end_time"] == T0 + 5
    assert store.job("9")[0]["state"] == "running"  # another cluster's sync is not this one's
    store.close()


def test_core_hours_count_the_part_of_each_run_inside_the_period(url):
    store = Store(url, history=MANUAL)
    store.write([], [], [jobs_event([
        job("a", "ann", "finished", cores=4, start=T0, end=T0 + H, account="phys"),
        job("b", "bob", "running", cores=2, start=T0 + 0.5 * H, account="phys"),
        job("c", "ann", "finished", cores=8, start=T0 + 3 * H, end=T0 + 4 * H, account="chem"),
        job("d", "cy", "pending", cores=100),
    ], T0 + 10)])
    now = T0 + 1.5 * H
    by_user = {r["user"]: r for r in store.core_hours(T0 + 0.5 * H, T0 + 2 * H, "user", now=now)}
    # ann: job a 4 cores over 0.5 h (c is after the period); bob: 2 cores from 0.5 h to now (1 h)
    assert by_user["ann"]["core_hours"] == pytest.approx(2.0) and by_user["ann"]["jobs"] == 1
    assert by_user["bob"]["core_hours"] == pytest.approx(2.0)
    assert "cy" not in by_user  # never started
    by_account = store.core_hours(T0, T0 + 5 * H, "account", now=T0 + 5 * H)
    assert [(r["account"], round(r["core_hours"], 6)) for r in by_account] == [("phys", 4 + 2 * 4.5), ("chem", 8.0)]
    store.close()


def figures_frames(node, seq0, start, steps, step, util, used):
    """DATA frames of the cluster-wide figures every ``step`` seconds."""
    names = (series("sched_utilization_ratio", cluster="c1", partition=""),
             series("sched_occupancy_ratio", cluster="c1", partition=""),
             series("sched_power_on_ratio", cluster="c1", partition=""),
             series("sched_cores", cluster="c1", partition="", state="used"),
             series("sched_cores", cluster="c1", partition="", state="total"))
    frames = [data(node, seq0 + i, start + i * step, [util(i), 0.5, 1.0, used(i), 40.0]) for i in range(steps)]
    return names, frames


def test_the_daily_and_monthly_tables_from_the_rollups(url):
    store = Store(url, history=MANUAL)
    names, _ = figures_frames("login1", 0, 0, 0, 1, None, None)
    d, h = hello("login1", series=names)
    h = h.__class__(h.node, h.incarnation, h.seq, T0 - 86400, h.kind, h.dict_version, h.payload)
    store.write([h], [d], [], nodes_rows())
    # the day before yesterday: utilization 0.25 (10 of 40 cores) for 12 h, then 0.75 (30)
    day1 = T0 - 86400
    _, f1 = figures_frames("login1", 1, day1, 144, 600, lambda i: 0.25 if i < 72 else 0.75,
                           lambda i: 10.0 if i < 72 else 30.0)
    # yesterday: 1.0 for 6 h (40 cores) then nothing sent (the source was away)
    _, f2 = figures_frames("login1", 1000, T0, 36, 600, lambda i: 1.0, lambda i: 40.0)
    store.write(f1 + f2, [], [], [])
    store.flush()
    got = store.utilization("c1", day1, T0 + 86400, "day", now=T0 + 86400 + 60)
    assert got["tier"] == "1m"
    days = {p["period"]: p for p in got["periods"]}
    assert list(days) == [period_of(day1, "day"), period_of(T0, "day")]
    first, second = days[period_of(day1, "day")], days[period_of(T0, "day")]
    assert first["utilization"] == pytest.approx(0.5) and first["samples"] == 144
    assert first["occupancy"] == pytest.approx(0.5) and first["power_on"] == pytest.approx(1.0)
    # the span from the first sample's minute to the end of the last one's
    span = (143 * 600 + 60) / H
    assert first["hours"] == pytest.approx(span)
    assert first["core_hours_used"] == pytest.approx(20 * span) and first["core_hours_total"] == pytest.approx(40 * span)
    assert second["utilization"] == pytest.approx(1.0) and second["samples"] == 36
    assert second["core_hours_used"] == pytest.approx(40 * (35 * 600 + 60) / H)
    months = store.utilization("c1", day1, T0 + 86400, "month", now=T0 + 86400 + 60)["periods"]
    if period_of(day1, "month") == period_of(T0, "month"):
        assert len(months) == 1 and months[0]["utilization"] == pytest.approx((72 * .25 + 72 * .75 + 36) / 180)
    else:
        assert [m["utilization"] for m in months] == [pytest.approx(0.5), pytest.approx(1.0)]
    assert store.sched_clusters() == ["c1"]
    store.close()


def test_malformed_job_entries_are_skipped_and_lose_nothing_else(url):
    """A newer agent's shape or a broken plugin: entries that are not jobs are
    skipped, the good ones of the same event and batch are stored."""
    store = Store(url, history=MANUAL)
    bad = ["not a list", ["short"], [None] * 11, ["", "u", "a", "p", "running", "R", "", 1, None, None, None],
           ["big", "u", "a", "p", "weird-state", "?", "", 10**30, float("nan"), "x", True]]
    good = job("ok", "ann", "running", start=T0)
    store.write([], [], [jobs_event([*bad, good], T0 + 10),
                         EventRow(T0, "login1", "sched_jobs", "no list", {"cluster": "c1", "jobs": "x"}, "login1", INC,
                                  next(_seq)),
                         EventRow(T0, "login1", "sched_jobs", "no attrs", "oops", "login1", INC, next(_seq))])
    rows = {j["id"]: j for j in store.jobs(since=0)}
    assert set(rows) == {"ok", "big"}
    assert rows["ok"]["state"] == "running"
    # unknown state words count as finished; out-of-range numbers are clamped or dropped
    assert (rows["big"]["state"], rows["big"]["cores"], rows["big"]["submit_time"]) == ("finished", 2**31 - 1, None)
    assert len(store.events(type="sched_jobs")) == 3  # each event still stored, once
    store.close()
