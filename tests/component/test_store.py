"""The root's Store against real databases: a SQLite file and PostgreSQL."""

from __future__ import annotations

import socket
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from clumon.proto.frames import Kind
from clumon.root.storage import schema as S
from clumon.root.storage import (
    DictionaryRow,
    EventRow,
    FrameRow,
    NodeRow,
    Store,
    StoreError,
    StoreUnavailable,
)
from db_fixtures import pg_base_url, pg_schema_url  # noqa: F401

INC = 1_700_000_000_000_000_000


def frame(node="n1", seq=1, ts=None, kind=Kind.DATA, inc=INC, dv=1) -> FrameRow:
    return FrameRow(node, inc, seq, 1000.0 + seq if ts is None else ts, int(kind), dv, b"\x93raw" + bytes([seq % 256]) * 7)


def node(name="n1", state="up", since=1000.0, **kw) -> NodeRow:
    base = dict(path="agg-a", parent="agg-a", role="agent", incarnation=INC, last_seen=1001.5, inventory={"cores": 8})
    base.update(kw)
    return NodeRow(name=name, state=state, since=since, **base)


def event(seq=1, ts=2000.0, subject="n1", type="state", source="agg-a") -> EventRow:
    return EventRow(ts, subject, type, f"{subject} went down", {"from": "up", "to": "down"}, source, INC, seq)


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg), pytest.param("pg-copy", marks=pytest.mark.pg)])
def store(request, tmp_path):
    """A Store on each backend; on PostgreSQL both the executemany and the COPY path."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'root.db'}")
    else:
        s = Store(request.getfixturevalue("pg_schema_url"), copy_threshold=1 if request.param == "pg-copy" else 10**9)
    yield s
    s.close()


def test_schema_is_versioned(store):
    with store.engine.connect() as conn:
        versions = [r.version for r in conn.execute(sa.select(S.schema_version))]
    assert versions == [m[0] for m in S.MIGRATIONS]
    # Opening again applies nothing twice.
    again = Store(store.url)
    assert again.schema_version == S.MIGRATIONS[-1][0]
    again.close()


def test_frames_round_trip_in_time_order(store):
    rows = [frame(seq=s, ts=1000.0 + (7 * s) % 10) for s in range(1, 11)]
    store.write(rows, [], [], [])
    got = store.frames("n1", 0, 10_000)
    assert got == sorted(rows, key=lambda f: (f.ts, f.seq))
    assert [f.ts for f in got] == sorted(f.ts for f in got)
    assert all(isinstance(f.payload, bytes) for f in got)


def test_frames_filters_node_range_and_kind(store):
    store.write(
        [
            frame(seq=1, ts=10.0),
            frame(seq=2, ts=20.0, kind=Kind.HELLO),
            frame(seq=3, ts=30.0),
            frame(seq=4, ts=40.0, kind=Kind.EVENT, dv=None),
            frame(node="n2", seq=1, ts=20.0),
        ],
        [],
        [],
        [],
    )
    assert [f.seq for f in store.frames("n1", 10.0, 30.0)] == [1, 3]
    assert [f.seq for f in store.frames("n1", 15.0, 35.0)] == [3]
    assert [f.seq for f in store.frames("n1", 0, 100, kinds=(1, 3))] == [2, 4]
    assert store.frames("n1", 0, 100, kinds=(3,))[0].dict_version is None
    assert [f.node for f in store.frames("n2", 0, 100)] == ["n2"]
    assert store.frames("nobody", 0, 100) == []


def test_replayed_frames_dictionaries_and_events_are_stored_once(store):
    frames = [frame(seq=s) for s in range(1, 51)]
    dicts = [DictionaryRow("n1", INC, 1, ("a", "b{x=\"1\"}"), {"host": "n1"}, "agent")]
    events = [event(seq=s, ts=2000.0 + s) for s in range(1, 4)]
    store.write(frames, dicts, events, [])
    store.write(frames[10:] + [frame(seq=51)], dicts, events, [])
    # Duplicates inside one batch are skipped too.
    store.write([frame(seq=52), frame(seq=52)], dicts + dicts, events + events, [])
    st = store.stats()
    assert st["frames_rows"] == 52
    assert st["dictionaries_rows"] == 1
    assert st["events_rows"] == 3
    assert len(store.frames("n1", 0, 10_000)) == 52


def test_same_seq_of_another_incarnation_is_a_new_frame(store):
    store.write([frame(seq=1, inc=INC), frame(seq=1, inc=INC + 1)], [], [], [])
    assert {f.incarnation for f in store.frames("n1", 0, 10_000)} == {INC, INC + 1}


def test_dictionaries_round_trip(store):
    d1 = DictionaryRow("n1", INC, 1, ("node_load1", 'node_disk_used_ratio{mount="/"}'), {"cores": 8, "kernel": "6.1"}, "agent")
    d2 = DictionaryRow("n1", INC, 2, ("node_load1",), {"cores": 8}, "agent")
    d3 = DictionaryRow("agg-a", INC, 1, ("clumon_children",), {}, "aggregator")
    store.write([], [d2, d3, d1], [], [])
    assert store.dictionaries("n1") == [d1, d2]
    assert store.dictionaries() == [d3, d1, d2]
    assert isinstance(store.dictionaries("n1")[0].series, tuple)


def test_json_fields_survive_odd_msgpack_values(store):
    inv = {"boot": 1.5, "nan": float("nan"), "raw": b"\x01\x02", 7: "int key", "nested": {"l": (1, 2)}}
    store.write([], [DictionaryRow("n1", INC, 1, ("a",), inv, "agent")], [], [])
    assert store.dictionaries("n1")[0].inventory == {
        "boot": 1.5, "nan": None, "raw": "0102", "7": "int key", "nested": {"l": [1, 2]},
    }


def test_events_newest_first_with_filters_and_limit(store):
    evs = [
        event(seq=1, ts=100.0, subject="n1", type="down"),
        event(seq=2, ts=300.0, subject="n2", type="down"),
        event(seq=3, ts=200.0, subject="n1", type="up"),
        event(seq=4, ts=400.0, subject="n1", type="down"),
    ]
    store.write([], [], evs, [])
    assert [e.source_seq for e in store.events()] == [4, 2, 3, 1]
    assert store.events()[0] == evs[3]
    assert [e.source_seq for e in store.events(subject="n1")] == [4, 3, 1]
    assert [e.source_seq for e in store.events(type="down")] == [4, 2, 1]
    assert [e.source_seq for e in store.events(subject="n1", type="down", since=150.0)] == [4]
    assert [e.source_seq for e in store.events(limit=2)] == [4, 2]


def test_nodes_upsert_by_name_and_keep_state_history(store):
    store.write([], [], [], [node("n2"), node("n1")])
    assert [n.name for n in store.nodes()] == ["n1", "n2"]
    assert store.nodes()[0] == node("n1")
    # The last row of a name in one batch wins; a state change adds history.
    store.write([], [], [], [node("n1", state="suspect", since=1015.0), node("n1", state="down", since=1030.0)])
    store.write([], [], [], [node("n1", state="down", since=1030.0, last_seen=1029.0)])
    n1 = store.nodes()[0]
    assert (n1.state, n1.since, n1.last_seen) == ("down", 1030.0, 1029.0)
    assert [(h.since, h.state) for h in store.state_history("n1")] == [(1000.0, "up"), (1030.0, "down")]
    assert len(store.nodes()) == 2


def test_forget_drops_the_node_from_the_live_view_only(store):
    store.write([frame()], [], [], [node("n1"), node("n2")])
    assert store.forget("n1") is True
    assert store.forget("n1") is False
    assert [n.name for n in store.nodes()] == ["n2"]
    assert len(store.frames("n1", 0, 10_000)) == 1


def test_stats_counts_rows_and_size(store):
    store.write([frame(seq=s) for s in range(1, 6)], [], [event()], [node()])
    st = store.stats()
    assert (st["frames_rows"], st["events_rows"], st["nodes_rows"], st["state_history_rows"]) == (5, 1, 1, 1)
    assert st["db_bytes"] > 0
    assert st["backend"] == store.backend


def test_a_refused_batch_commits_nothing(store):
    bad = NodeRow("n9", "", "", "agent", None, 1.0, INC, 1.0, {})  # NOT NULL state
    with pytest.raises(StoreError) as info:
        store.write([frame(seq=1)], [], [event()], [node("n1"), bad])
    assert not isinstance(info.value, StoreUnavailable)
    st = store.stats()
    assert (st["frames_rows"], st["events_rows"], st["nodes_rows"]) == (0, 0, 0)


def test_concurrent_reads_while_one_thread_writes(store):
    def writer():
        for b in range(20):
            store.write([frame(seq=b * 10 + i) for i in range(1, 11)], [], [], [node(last_seen=float(b))])

    def reader(_):
        for _ in range(20):
            fs = store.frames("n1", 0, 10_000)
            assert [f.ts for f in fs] == sorted(f.ts for f in fs)
            store.nodes()
        return True

    with ThreadPoolExecutor(4) as pool:
        w = pool.submit(writer)
        readers = [pool.submit(reader, i) for i in range(3)]
        w.result()
        assert all(r.result() for r in readers)
    assert store.stats()["frames_rows"] == 200


# --- the database going away ----------------------------------------------


def test_sqlite_file_that_cannot_be_opened_then_returns(tmp_path):
    missing = tmp_path / "not-yet" / "root.db"
    store = Store(f"sqlite:///{missing}")  # a root may start before its disk is there
    batch = [frame(seq=s) for s in range(1, 4)]
    with pytest.raises(StoreUnavailable):
        store.write(batch, [], [event()], [node()])
    with pytest.raises(StoreUnavailable):
        store.nodes()
    missing.parent.mkdir()
    store.write(batch, [], [event()], [node()])
    store.write(batch, [], [event()], [node()])  # the caller's retry of the same batch
    assert store.frames("n1", 0, 10_000) == batch
    assert store.stats()["events_rows"] == 1
    store.close()


def test_sqlite_locked_by_another_writer(tmp_path):
    path = tmp_path / "root.db"
    store = Store(f"sqlite:///{path}", busy_timeout=0.2)
    store.write([frame(seq=1)], [], [], [])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    batch = [frame(seq=s) for s in range(2, 6)]
    with pytest.raises(StoreUnavailable, match="locked"):
        store.write(batch, [], [], [node()])
    assert len(store.frames("n1", 0, 10_000)) == 1  # readers still read (WAL)
    other.execute("ROLLBACK")
    other.close()
    store.write(batch, [], [], [node()])
    assert [f.seq for f in store.frames("n1", 0, 10_000)] == [1, 2, 3, 4, 5]
    store.close()


def test_sqlite_readonly_database_file(tmp_path):
    path = tmp_path / "root.db"
    Store(f"sqlite:///{path}").close()
    store = Store(f"sqlite:///file:{path}?mode=ro&uri=true", busy_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        store.write([frame()], [], [], [])
    store.close()


@pytest.mark.pg
def test_postgresql_refusing_connections():
    pg_base_url()
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/test")
    with pytest.raises(StoreUnavailable):
        store.write([frame()], [], [], [])
    with pytest.raises(StoreUnavailable):
        store.events()
    store.close()


@pytest.mark.pg
def test_postgresql_table_locked_elsewhere(pg_schema_url):
    store = Store(pg_schema_url, busy_timeout=0.2)
    store.write([frame(seq=1)], [], [], [])
    locker = sa.create_engine(pg_schema_url)
    with locker.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("LOCK TABLE frames IN EXCLUSIVE MODE")
        with pytest.raises(StoreUnavailable, match="lock"):
            store.write([frame(seq=2)], [], [], [node()])
        conn.exec_driver_sql("ROLLBACK")
    locker.dispose()
    store.write([frame(seq=2)], [], [], [node()])
    assert [f.seq for f in store.frames("n1", 0, 10_000)] == [1, 2]
    store.close()


class TcpProxy:
    """A TCP forwarder that can be cut (every connection dropped, new ones
    refused) and restored, standing in for a PostgreSQL server that goes away."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen()
        self.port = ls.getsockname()[1]
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close() alone does not
        self._listener.close()
        for s in self._conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._conns.clear()


@pytest.mark.pg
def test_postgresql_going_away_and_returning(pg_schema_url):
    u = sa.make_url(pg_schema_url)
    proxy = TcpProxy((u.host, u.port or 5432))
    store = Store(pg_schema_url.replace(f"{u.host}:{u.port}", f"127.0.0.1:{proxy.port}"))
    store.write([frame(seq=1)], [], [], [node()])
    proxy.cut()
    batch = [frame(seq=s) for s in range(2, 300)]  # large enough for the COPY path
    with pytest.raises(StoreUnavailable):
        store.write(batch, [], [event()], [node(state="down", since=1050.0)])
    with pytest.raises(StoreUnavailable):
        store.write(batch, [], [event()], [node(state="down", since=1050.0)])
    proxy.start()
    store.write(batch, [], [event()], [node(state="down", since=1050.0)])
    assert [f.seq for f in store.frames("n1", 0, 10_000)] == list(range(1, 300))
    assert store.nodes()[0].state == "down"
    assert len(store.events()) == 1
    store.close()
    proxy.cut()
