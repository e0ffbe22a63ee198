"""Compaction's CPU work (decoding frames, encoding chunks) in a process of its
own, so that it runs on another core than the root's writer thread: threads
of one process share one interpreter lock, and the writer already holds it
most of the time (measured in ``bench/root_ingest.py``).

The process only reads the database (its own connection): it returns a
``compaction.NodePlan`` whose chunks name their series; the compactor thread
in the root gives them keys, writes them and retires the frames. It is
spawned (not forked: the root has threads by then), so a program that starts
the compactor needs the ``if __name__ == "__main__"`` guard, as the root's
entry points have; it ends when the root does, even after a kill -9.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import sqlalchemy as sa

from . import compaction
from . import schema as S
from .engine import StoreUnavailable, Translate, make_engine

log = logging.getLogger("clumon.root.storage.planner")

# --- in the planning process -------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """End this process when the root is gone, even killed with -9 (the pool's
    worker would otherwise wait for work forever, holding its connection)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_engines: dict[str, sa.Engine] = {}
_names: dict[tuple[str, int, int], tuple[str, ...] | None] = {}
#: dictionaries kept (a few KB each); past this the cache starts again
_NAMES_MAX = 20_000


def _series_names(conn: sa.Connection, node: str, incarnation: int, dv: int) -> tuple[str, ...] | None:
    key = (node, incarnation, dv)
    if key not in _names:
        if len(_names) >= _NAMES_MAX:  # every restart of every node adds one: stay bounded
            _names.clear()
        d = S.dictionaries
        row = conn.execute(sa.select(d.c.series).where(
            d.c.node == node, d.c.incarnation == incarnation, d.c.dict_version == dv)).first()
        if row is None:
            return None  # not cached: it may be stored later
        _names[key] = tuple(row.series)
    return _names[key]


def plan(url: str, busy_timeout: float, node: str, cutoff: float) -> compaction.NodePlan | None:
    """``compaction.plan_node`` on this process's own connection; errors come
    back as ``StoreError``/``StoreUnavailable`` (they pickle, driver errors
    may not)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url, busy_timeout)
    with Translate(), engine.connect() as conn:
        return compaction.plan_node(conn, node, cutoff, lambda n, i, v: _series_names(conn, n, i, v))


# --- in the root ----------------------------------------------------------------------


class Planner:
    """One planning process (started on first use, replaced if it dies)."""

    def __init__(self, url: str, busy_timeout: float):
        self.url = url
        self.busy_timeout = busy_timeout
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, node: str, cutoff: float) -> Callable[[], compaction.NodePlan | None]:
        """Start planning ``node``; returns what waits for the plan."""
        if self._pool is None:
            # spawn, not fork: the root has threads and a zmq context by now
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_watch_parent, initargs=(os.getpid(),))
        future = self._pool.submit(plan, self.url, self.busy_timeout, node, cutoff)

        def result() -> compaction.NodePlan | None:
            try:
                return future.result()
            except BrokenProcessPool as exc:
                self.stop()
                raise StoreUnavailable(f"the compaction process died ({exc}); starting another") from exc

        return result

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
