"""One read serves many askers: the agent's reads of its sources, shared.

Every read of a source — the schedule's, or a sync read's — goes through
``SharedReads.start`` (``read`` awaits it): on the loop for the sources that
never block (``on_loop``), in the one collecting thread for the others. A source already being read is not read again: whoever asks
while the read is in flight waits for that read. A sync read with ``max_age``
takes a source's snapshot when it is young enough and reads the others now, so
N sync reads that arrive together cost one read of /proc.

A sync read of a source that is not due yet is a read off the schedule: it
answers the asker and updates the snapshot, but keeps the source's phase and
stores nothing, so the database holds one sample a tick whatever the clients do.
A source that is due when a sync read comes is read for both.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections import deque
from concurrent.futures import Executor, Future
from typing import Callable, Sequence

from clumon.agent.sampler import Reading, Sampler, Source

log = logging.getLogger("clumon.agent.reads")


class SharedReads:
    """Reads sources in one executor thread, sharing reads that are in flight.

    ``publish`` is called on the loop with each reading exactly once, by the
    asker that started it (so a shared read is sent up once); ``on_read`` (if
    given) after every read that was not done inline, so the schedule can look at
    the sources again (an inline read's caller is the schedule).
    """

    def __init__(self, sampler: Sampler, executor: Executor, publish: Callable[[Reading], None],
                 clock: Callable[[], float] = time.time, keep: int = 4096,
                 on_read: Callable[[], None] | None = None):
        self.sampler = sampler
        self._executor = executor
        self._publish = publish
        self._on_read = on_read
        self._clock = clock
        self._inflight: dict[int, Future] = {}
        #: seconds each read took (in the collecting thread), newest last
        self.durations: deque[float] = deque(maxlen=keep)
        self.values_collected = 0
        self.shared = 0

    @property
    def busy(self) -> bool:
        """Whether a read is in flight (the sampler's phases are being moved)."""
        return bool(self._inflight)

    def _timed_read(self, sources: Sequence[Source], scheduled: bool = True) -> Reading:
        t0 = time.perf_counter()
        reading = self.sampler.read(sources, scheduled)
        self.durations.append(time.perf_counter() - t0)
        return reading

    def start(self, sources: Sequence[Source], inline: bool = False) -> list[Future]:
        """Start reading those of ``sources`` not already in flight; returns at once.

        Sources marked ``on_loop`` (the /proc files of the 1 s sources: the kernel
        makes them from memory, a read never waits on a device) are read on the
        loop, so a tick needs no hand-off to the collecting thread and back; the
        others go to the collecting thread, with no task and no asyncio future: a
        concurrent future whose result is published from a loop callback.

        ``inline`` (the schedule's reads) reads the on-loop sources here and now
        and publishes them before returning (``on_read`` is not called: the caller
        is the schedule). Otherwise (sync reads) they are read in a callback of
        this same iteration behind a future, so askers that come in the meantime
        join that one read instead of reading again. Returns the futures started
        (none when every source was in flight already or read inline).
        """
        mine = [s for s in sources if id(s) not in self._inflight]
        self.shared += len(sources) - len(mine)
        if inline:
            here = [s for s in mine if s.on_loop]
            if here:
                self._read_inline(here)
            there = [s for s in mine if not s.on_loop]
            return self._start_reads(there, True) if there else []
        due_by = self.sampler.monotonic()
        due = [s for s in mine if s.next_due <= due_by]
        off = [s for s in mine if s.next_due > due_by]  # before a read moves next_due
        return self._start_reads(due, True) + self._start_reads(off, False)

    def _start_reads(self, sources: Sequence[Source], scheduled: bool) -> list[Future]:
        """Futures reading ``sources``: on the loop those that never block (in a
        callback of this iteration), in the collecting thread the others."""
        loop = asyncio.get_running_loop()
        started = []
        here = [s for s in sources if s.on_loop]
        if here:
            fut: Future = Future()
            loop.call_soon(self._read_here, fut, here, scheduled)
            started.append(self._track(fut, here))
        there = [s for s in sources if not s.on_loop]
        if there:
            fut = self._executor.submit(self._timed_read, there, scheduled)
            fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finish, f, there))
            started.append(self._track(fut, there))
        return started

    def _track(self, fut: Future, sources: Sequence[Source]) -> Future:
        for s in sources:
            self._inflight[id(s)] = fut
        return fut

    def _read_inline(self, sources: Sequence[Source]) -> None:
        """Read and publish now (the schedule's on-loop sources: no future, no callback).

        Never raises, as a read in the thread never reaches its caller: a failure is
        logged and the schedule goes on.
        """
        try:
            reading = self._timed_read(sources)
            self.values_collected += reading.count
            self._publish(reading)
        except Exception as exc:
            log.error("reading or publishing %s failed", [s.collector.name for s in sources], exc_info=exc)

    def _read_here(self, fut: Future, sources: Sequence[Source], scheduled: bool) -> None:
        """On the loop: read sources that never block, then publish as for the thread's reads."""
        if fut.set_running_or_notify_cancel():
            try:
                fut.set_result(self._timed_read(sources, scheduled))
            except Exception as exc:  # published as a failed read, as the thread's would be
                fut.set_exception(exc)
        self._finish(fut, sources)

    def _finish(self, fut: Future, sources: Sequence[Source]) -> None:
        """On the loop: forget the read in flight and publish what it found."""
        for s in sources:
            if self._inflight.get(id(s)) is fut:
                del self._inflight[id(s)]
        try:
            exc = fut.exception()
            if exc is not None:
                log.error("reading %s failed", [s.collector.name for s in sources], exc_info=exc)
            else:
                reading = fut.result()
                self.values_collected += reading.count
                self._publish(reading)
        finally:
            if self._on_read is not None:
                self._on_read()

    async def read(self, sources: Sequence[Source]) -> None:
        """Read ``sources`` now, joining reads of any of them already in flight;
        returns once every one of them has been read and published."""
        self.start(sources)
        joined = {id(f): f for s in sources if (f := self._inflight.get(id(s))) is not None}
        if joined:
            # The wrapper's result is copied to the loop by a callback queued after
            # _finish's, so the reading is published before this returns.
            await asyncio.gather(*(asyncio.wrap_future(f) for f in joined.values()), return_exceptions=True)

    async def answer(self, globs: Sequence[str], max_age: float) -> dict:
        """Values of the series matching ``globs`` (all when empty), each no older than
        ``max_age`` where a read can make it so.

        Each value is ``[value, ts, age_s, live]``: ``live`` when its source was read
        for this request (or by a read in flight when it came), else served from the
        snapshot; the age is measured here, so no clocks of two hosts are compared.
        Pushed sources (executable plugins) are never run on demand.
        """
        asked = self._clock()
        relevant = [s for s in self.sampler.sources if _wanted(s, globs)]
        stale = [s for s in relevant if not s.pushed and asked - s.last_read > max_age]
        if stale:
            await self.read(stale)
        fresh = {id(s) for s in stale if not s.failure}
        now = self._clock()
        values: dict[str, list] = {}
        for s in relevant:
            live = id(s) in fresh
            names, vals, ts = s.last
            age = round(max(0.0, now - ts), 3)
            for name, v in zip(names, vals):
                if globs and not any(fnmatch.fnmatchcase(name, g) for g in globs):
                    continue
                values[name] = [v, ts, age, live]
        return {"values": dict(sorted(values.items())),
                "live": bool(values) and all(v[3] for v in values.values()),
                "cached": sum(1 for v in values.values() if not v[3])}


def _wanted(src: Source, globs: Sequence[str]) -> bool:
    if not globs or not src.names:  # a source not read yet may hold what is asked for
        return True
    return any(fnmatch.fnmatchcase(n, g) for n in src.names for g in globs)
