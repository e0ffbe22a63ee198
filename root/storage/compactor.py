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
pass.

On SQLite (one writer at a time) every write of the process takes
``frames_lock``, the compactor's included: threads taking turns at a lock are
woken when it is free, whereas SQLite's busy handler polls, and a writer that
commits back to back starved the compactor past its busy timeout in the bench.
The compactor's transactions begin ``IMMEDIATE`` and stay short (one node's
chunks), so ``write`` waits for little.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from typing import Callable

import sqlalchemy as sa

from clumon.proto.runtime import QuietLog

from . import compaction, rollup_sql
from . import schema as S
from .engine import StoreError, Translate
from .history import History, _Reuse
from .planner import Planner

log = logging.getLogger("clumon.root.storage.compactor")

#: Nodes planned together and written in one transaction (amortises the wait
#: for the writer's turn; ~2 M samples of a busy site's 30-minute windows).
GROUP = 8


class Compactor:
    """Compacts complete windows of raw frames, in passes: called directly
    (``run_pass``) or from its own thread (``start``/``stop``)."""

    def __init__(self, history: History, read_engine: sa.Engine, write_engine: sa.Engine,
                 one_writer: bool = False, planner: Planner | None = None):
        self.history = history
        #: plans in another process while the thread runs (None: in this thread)
        self.planner = planner
        self._planning_elsewhere = False
        #: SQLite: every write of this process takes ``frames_lock``
        self.one_writer = one_writer
        self.read_engine = read_engine
        self.write_engine = write_engine
        self._one_pass = threading.Lock()  # the thread and direct callers take turns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = QuietLog(log)
        self.frames_compacted = 0
        self.passes = 0
        #: seconds spent in passes that compacted something
        self.busy_seconds = 0.0
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
        seconds between groups of ``GROUP`` nodes); returns frames compacted.
        Raises ``StoreUnavailable`` like the Store."""
        with self._one_pass, Translate():
            cutoff, nodes = self.todo(now)
            nodes = nodes[:max_nodes]
            groups = [nodes[i: i + GROUP] for i in range(0, len(nodes), GROUP)]
            done, t0 = 0, time.perf_counter()
            ahead = self._plan_ahead(groups[0], cutoff) if groups else []
            for i, group in enumerate(groups):
                plans = [get() for get in ahead]
                last = i + 1 == len(groups) or time.perf_counter() - t0 >= budget or self._stop.is_set()
                # the next group is planned (elsewhere) while this one is written
                ahead = [] if last else self._plan_ahead(groups[i + 1], cutoff)
                done += self._commit(group, [p for p in plans if p is not None])
                if last:
                    break
            self.frames_compacted += done
            self.passes += 1
            if done:
                self.busy_seconds += time.perf_counter() - t0
            return done

    def _plan_ahead(self, nodes: list[str], cutoff: float) -> list[Callable[[], compaction.NodePlan | None]]:
        if self._planning_elsewhere:
            return [self.planner.submit(node, cutoff) for node in nodes]
        return [functools.partial(self._plan_here, node, cutoff) for node in nodes]

    def _plan_here(self, node: str, cutoff: float) -> compaction.NodePlan | None:
        h = self.history
        with self.read_engine.connect() as conn:
            names = lambda n, i, v: h.series_names(lambda: _Reuse(conn), n, i, v)  # noqa: E731
            return compaction.plan_node(conn, node, cutoff, names)

    def _commit(self, nodes: list[str], plans: list[compaction.NodePlan]) -> int:
        """Write the plans' chunks, retire their frames, note each node's
        oldest frame left; returns frames retired."""
        h = self.history
        keys = [(k, "node", p.node, series) for p in plans
                for k, series in p.assign_keys(lambda n, s: h.rollups.key("node", n, s))]
        if plans and not self.one_writer:  # beside the writer's transactions
            with self.write_engine.begin() as conn:
                self._write(conn, keys, plans)
        with h.frames_lock:
            with self.write_engine.begin() as conn:
                if plans and self.one_writer:  # one turn at SQLite's write lock, not two
                    self._write(conn, keys, plans)
                for plan in plans:
                    compaction.retire_frames(conn, plan, h.ranges)
                f = S.frames
                oldest = {n: conn.execute(sa.select(sa.func.min(f.c.ts)).where(f.c.node == n)).scalar()
                          for n in nodes}
            for node, ts in oldest.items():
                if ts is None:
                    h.raw_oldest.pop(node, None)
                else:
                    h.raw_oldest[node] = ts
        return sum(p.frames for p in plans)

    @staticmethod
    def _write(conn: sa.Connection, keys: list, plans: list[compaction.NodePlan]) -> None:
        # The keys the chunks refer to commit with them (the writer writes
        # them too, later: both ignore a key already there).
        rollup_sql.write_keys(conn, sorted(keys))
        for plan in plans:
            compaction.write_chunks(conn, plan)

    # --- the thread -------------------------------------------------------------------

    def start(self, every: float = 10.0) -> None:
        """Compact from a thread of its own: a pass, then another at once
        while nodes are due, else every ``every`` seconds."""
        if self.running:
            return
        self._stop.clear()
        self._planning_elsewhere = self.planner is not None
        self._thread = threading.Thread(target=self._run, args=(every,), name="compactor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the node being compacted (each step commits or rolls
        back whole, so stopping between them loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._planning_elsewhere = False
        if self.planner is not None:
            self.planner.stop()

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
