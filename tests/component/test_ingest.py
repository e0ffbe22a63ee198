"""The root's ingest over a real SQLite store: acks after commit, a full buffer
refuses without acking, a DATA frame waits for its dictionary, replays store once."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from clumon.proto import codec
from clumon.proto.frames import Data, Hello, make
from clumon.proto.tree import LatestCache
from clumon.root.ingest import Ingest
from clumon.root.registry import Registry
from clumon.root.storage import Store

INC = 1_700_000_000_000_000_000


def frames(node: str, n: int, start: int = 2):
    out = []
    for seq in range(start, start + n):
        f = make(node, INC, time.time(), Data.from_values(1, [float(seq), 2.0]), seq)
        out.append((f, codec.encode(f)))
    return out


def hello(node: str):
    f = make(node, INC, time.time(), Hello(1, ("a", "b"), {"host": node}), 1)
    return f, codec.encode(f)


def make_ingest(tmp_path, **kw):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    acks, asked = [], []
    ing = Ingest(store, Registry(), LatestCache(), lambda hop, ack: acks.append((hop, ack)),
                 lambda hop, node: asked.append((hop, node)), "root", 1, **kw)
    return ing, store, acks, asked


def acked(acks) -> set[int]:
    return {s for _, a in acks for e in a.entries for s in e.seqs()}


def stored(tmp_path, node: str) -> list[int]:
    with sqlite3.connect(tmp_path / "db.sqlite") as c:
        return [r[0] for r in c.execute("SELECT seq FROM frames WHERE node = ? ORDER BY seq", (node,))]


def test_full_buffer_refuses_without_ack_and_loses_nothing_on_replay(tmp_path):
    ing, store, acks, _ = make_ingest(tmp_path, max_pending=5)
    h = hello("n1")
    ing.accept("agg-1", ("agg-1",), *h)
    batch = frames("n1", 10)
    for f, raw in batch:
        ing.accept("agg-1", ("agg-1",), f, raw)
    assert ing.pending == 5 and ing.frames_refused == 6
    asyncio.run(ing.commit_once())
    assert acked(acks) == {1, 2, 3, 4, 5}, "only what was stored is acknowledged"
    # the sender replays what was never acked (its spool): a few rounds store it
    # all, and duplicates of what was stored are stored once
    for _ in range(5):
        for f, raw in [h, *batch]:
            if f.seq not in acked(acks):
                ing.accept("agg-1", ("agg-1",), f, raw)
        asyncio.run(ing.commit_once())
    assert stored(tmp_path, "n1") == list(range(1, 12))
    assert acked(acks) == set(range(1, 12))
    store.close()


def test_data_waits_for_its_dictionary(tmp_path):
    ing, store, acks, asked = make_ingest(tmp_path)
    (f, raw), = frames("n2", 1)
    ing.accept("agg-1", ("agg-1",), f, raw)
    assert asked == [("agg-1", "n2")], "the root asks for the HELLO"
    asyncio.run(ing.commit_once())
    assert stored(tmp_path, "n2") == [] and not acked(acks)
    ing.accept("agg-1", ("agg-1",), *hello("n2"))
    asyncio.run(ing.commit_once())
    assert stored(tmp_path, "n2") == [1, 2]
    assert ing.cache.latest("n2")["a"][0] == 2.0
    store.close()


def test_a_commit_that_raises_is_survived_and_nothing_is_acked_unstored(tmp_path):
    """Any exception out of a write (a bug, a value no driver takes) is logged and
    counted; the commit task goes on, and what was not stored is not acknowledged."""

    class Flaky(Store):
        failures = 2

        def write(self, frames=(), *rest):
            if self.failures and len(frames) > 1:
                self.failures -= 1
                raise RecursionError("maximum recursion depth exceeded (a test's bug)")
            return super().write(frames, *rest)

    store = Flaky(f"sqlite:///{tmp_path / 'db.sqlite'}")
    acks = []
    ing = Ingest(store, Registry(), LatestCache(), lambda hop, ack: acks.append((hop, ack)),
                 lambda hop, node: None, "root", 1, commit_interval=0.01)
    ing.accept("agg-1", ("agg-1",), *hello("n1"))
    for f, raw in frames("n1", 5):
        ing.accept("agg-1", ("agg-1",), f, raw)

    async def main():
        task = asyncio.create_task(ing.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if acked(acks) >= set(range(1, 7)):
                break
        assert not task.done(), "the commit task ended"
        task.cancel()

    asyncio.run(main())
    assert acked(acks) == set(range(1, 7)) and stored(tmp_path, "n1") == list(range(1, 7))
    assert ing.commit_errors >= 1 and ing.frames_rejected == 0
    ing.close()
    store.close()


def test_frames_waiting_for_a_dictionary_are_bounded_in_bytes(tmp_path):
    ing, store, acks, asked = make_ingest(tmp_path, max_waiting_bytes=300)
    batch = frames("n1", 20)  # DATA before any HELLO: they wait for it
    size = len(batch[0][1])
    for f, raw in batch:
        ing.accept("agg-1", ("agg-1",), f, raw)
    kept = 300 // size
    assert ing.frames_refused == 20 - kept and asked == [("agg-1", "n1")]
    ing.accept("agg-1", ("agg-1",), *hello("n1"))
    asyncio.run(ing.commit_once())
    assert acked(acks) == set(range(1, 2 + kept)), "what was refused is not acknowledged"
    ing.close()
    store.close()
