"""Compaction beside ingest: its own thread and its own connections.

Compacting a node is three steps (``compaction.plan_node``, ``write_chunks``,
``retire_frames``), each short:

1. read the node's old frames and build its chunks (a read; no lock);
2. write the chunks in a transaction of their own (idempotent: redoing a node
   merges the same points into the same chunks);
3. under ``History.frames_lock``, delete the frames, record their seq ranges
   as compacted (in SQL and in memory) and commit.

``Store.write`` holds the same lock from checking a batch against the
compacted ranges until its commit, so a replayed frame either meets its row
still in ``frames`` (the insert ignores it) or the ranges that retired it —
never neither: it is stored and rolled up once. A late frame that arrives
after step 1 is not in the plan, stays in ``frames`` and goes with the next
pass. On SQLite (one writer at a time) the compactor's writes begin
``IMMEDIATE`` and stay short, so ``write`` waits for at most one node's chunks.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import sqlalchemy as sa

from clumon.proto.runtime import QuietLog

from . import compaction, rollup_sql
from . import schema as S
from .engine import StoreError, Translate
from .history import History, _Reuse

log = logging.getLogger("clumon.root.compactor")


class Compactor:
    """Compacts complete windows of raw frames, in passes: called directly
    (``run_pass``) or from its own thread (``start``/``stop``)."""

    def __init__(self, history: History, read_engine: sa.Engine, write_engine: sa.Engine):
        self.history = history
        self.read_engine = read_engine
        self.write_engine = write_engine
        self._one_pass = threading.Lock()  # the thread and direct callers take turns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = QuietLog(log)
        self.frames_compacted = 0
        self.passes = 0
        self.last_error = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- one pass -------------------------------------------------------------------

    def todo(self, now: float) -> tuple[float, list[str]]:
        """(cutoff, nodes holding frames older than it): windows are complete
        ``raw_window`` seconds after they end."""
        width = compaction.CHUNK_SECONDS
        cutoff = (now - self.history.config.raw_window) // width * width
        with self.history.frames_lock:
            nodes = [n for n, oldest in self.history.raw_oldest.items() if oldest < cutoff]
        return cutoff, nodes

    def run_pass(self, now: float, budget: float = math.inf, max_nodes: int | None = None) -> int:
        """Compact the due nodes (at most ``max_nodes``, checking ``budget``
        seconds between nodes); returns frames compacted. Raises
        ``StoreUnavailable`` like the Store."""
        with self._one_pass, Translate():
            cutoff, nodes = self.todo(now)
            done, t0 = 0, time.perf_counter()
            for node in nodes[:max_nodes]:
                if time.perf_counter() - t0 >= budget or self._stop.is_set():
                    break
                done += self.compact_node(node, cutoff)
            self.frames_compacted += done
            self.passes += 1
            return done

    def compact_node(self, node: str, cutoff: float) -> int:
        h = self.history
        key_of = lambda n, s: h.rollups.key("node", n, s)  # noqa: E731
        with self.read_engine.connect() as conn:
            names = lambda n, i, v: h.series_names(lambda: _Reuse(conn), n, i, v)  # noqa: E731
            plan = compaction.plan_node(conn, node, cutoff, names, key_of)
        if plan is not None:
            with self.write_engine.begin() as conn:
                # The keys the chunks refer to commit with them (the writer
                # writes them too, later: both ignore a key already there).
                rollup_sql.write_keys(conn, [(k, *h.rollups.key_names[k]) for k in sorted(set(plan.keys))])
                compaction.write_chunks(conn, plan)
        with h.frames_lock:
            with self.write_engine.begin() as conn:
                if plan is not None:
                    compaction.retire_frames(conn, plan, h.ranges)
                oldest = conn.execute(sa.select(sa.func.min(S.frames.c.ts)).where(S.frames.c.node == node)).scalar()
            if oldest is None:
                h.raw_oldest.pop(node, None)
            else:
                h.raw_oldest[node] = oldest
        return plan.frames if plan is not None else 0

    # --- the thread -------------------------------------------------------------------

    def start(self, every: float = 10.0) -> None:
        """Compact from a thread of its own: a pass, then another at once
        while nodes are due, else every ``every`` seconds."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(every,), name="compactor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the node being compacted (each step commits or rolls
        back whole, so stopping between them loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, every: float) -> None:
        pause = 0.0
        while not self._stop.wait(pause):
            try:
                done = self.run_pass(time.time(), budget=every)
            except StoreError as exc:
                self.last_error = str(exc)
                self._quiet.warn("compact", "compaction paused: %s", exc)
                pause = every
                continue
            except Exception:  # a bug must not end compaction for good
                log.exception("compaction failed")
                pause = every
                continue
            self.last_error = ""
            if done:
                log.debug("compacted %d frames", done)
            pause = 0.0 if done and self.todo(time.time())[1] else every
