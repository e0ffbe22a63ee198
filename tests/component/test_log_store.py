"""The root's log tables on a real SQLite file and a real PostgreSQL (``CLUMON_TEST_PG_URL``):
once-only lines, events, search, compaction."""

from __future__ import annotations

import time

from db_fixtures import db_url, pg_schema_url  # noqa: F401 - fixtures

from clumon.proto.frames import LogFile
from clumon.root.storage import LogRow, Store
from clumon.root.storage.logs import WINDOW


def lf(fid: int, first: int, n: int, ts: float, source: str = "app", path: str = "/var/log/app.log",
       matches=()) -> LogFile:
    offsets = tuple(range(first * 10, (first + n) * 10, 10))
    return LogFile(fid, source, path, ts, offsets[-1] + 10, offsets,
                   tuple(f"line {i:05d} {'BOOM' if i % 7 == 0 else 'ok'}" for i in range(first, first + n)),
                   None, tuple(matches))


def all_lines(store: Store, **q) -> list[dict]:
    args = dict(nodes=None, source=None, since=0.0, until=time.time() + 10, grep=None, limit=100000)
    return store.log_lines(**{**args, **q})["lines"]


def test_lines_sent_twice_are_stored_once_and_events_once(db_url):
    store = Store(db_url)
    now = time.time()
    first = lf(1, 0, 10, now, matches=((0, "boom"), (7, "boom")))
    ev = store.write([LogRow("n1", 1, 1, now, (first,))])
    assert len(ev) == 2 and {e.type for e in ev} == {"log_match"}
    # a replay of the same frame, and a re-read (new incarnation) overlapping it
    again = lf(1, 5, 10, now, matches=((2, "boom"), (9, "boom")))  # lines 7 and 14
    ev2 = store.write([LogRow("n1", 1, 1, now, (first,)), LogRow("n1", 2, 1, now, (again,))])
    assert [e.attrs["offset"] for e in ev2] == [140]  # line 14 only: line 7's event is stored
    got = all_lines(store)
    assert [x["line"].split()[1] for x in got] == [f"{i:05d}" for i in range(15)]
    assert len(store.events(None, "log_match", 0, 100)) == 3
    assert store.logs.lines_duplicate == 15
    store.close()
    # a new root process knows what is stored from log_files
    store2 = Store(db_url)
    store2.write([LogRow("n1", 2, 1, now, (again,))])
    assert len(all_lines(store2)) == 15
    store2.close()


def test_search_by_node_source_grep_time_and_follow(db_url):
    store = Store(db_url)
    now = time.time()
    store.write([LogRow("n1", 1, 1, now - 7200, (lf(1, 0, 5, now - 7200),)),
                 LogRow("n2", 1, 1, now, (lf(2, 0, 5, now, source="sys"),))])
    assert len(all_lines(store)) == 10
    assert {x["node"] for x in all_lines(store, nodes=["n2"])} == {"n2"}
    assert {x["source"] for x in all_lines(store, source="app")} == {"app"}
    assert len(all_lines(store, since=now - 60)) == 5
    assert [x["line"] for x in all_lines(store, grep="BOOM")] == ["line 00000 BOOM", "line 00000 BOOM"]
    newest = store.log_lines(nodes=None, source=None, since=0.0, until=now + 10, grep=None, limit=3)
    assert newest["truncated"] and len(newest["lines"]) == 3
    cursor = store.log_lines(nodes=None, source=None, since=0.0, until=now + 10, grep=None, limit=100)["cursor"]
    store.write([LogRow("n1", 1, 2, now, (lf(1, 5, 2, now),))])
    follow = store.log_lines(nodes=None, source=None, since=0.0, until=now + 10, grep=None, limit=100, after=cursor)
    assert [x["line"][:10] for x in follow["lines"]] == ["line 00005", "line 00006"]
    store.close()


def test_compaction_merges_a_closed_window_and_keeps_every_line(db_url):
    store = Store(db_url)
    old = (time.time() // WINDOW - 3) * WINDOW + 10
    for k in range(20):  # one commit each: twenty small chunks of one window
        store.write([LogRow("n1", 1, k + 1, old + k, (lf(1, k * 3, 3, old + k),))])
    before = all_lines(store)
    assert store.compact_logs() == 19
    after = all_lines(store)
    assert after == before and len(after) == 60
    assert store.stats()["log_chunks_rows"] == 1
    # a follow from before the merge does not see the merged lines again
    follow = store.log_lines(nodes=None, source=None, since=0.0, until=time.time() + 10, grep=None, limit=100,
                             after=1)
    assert follow["lines"] == []
    store.close()


def test_grep_anchors_and_multiline_records_mean_what_they_mean_line_by_line(db_url):
    store = Store(db_url)
    now = time.time()
    texts = ("ERROR first", "an ERROR inside", "Traceback:\n  File x\nValueError", "tail ERROR")
    offsets = (0, 20, 40, 90)
    store.write([LogRow("n1", 1, 1, now, (LogFile(9, "app", "/a", now, 120, offsets, texts),))])
    assert [x["line"] for x in all_lines(store, grep="^ERROR")] == ["ERROR first"]
    assert [x["line"] for x in all_lines(store, grep="ERROR$")] == ["tail ERROR"]
    assert [x["offset"] for x in all_lines(store, grep=r"\AT")] == [40]
    assert [x["offset"] for x in all_lines(store, grep="File x")] == [40]
    assert all_lines(store, grep="nowhere") == []
    store.close()
