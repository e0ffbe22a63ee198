"""One simulator process: many simulated agents on one event loop.

See ``simulate.py`` for the whole. Each simulated agent owns a real ``Uplink``
(DEALER, spool, acks, heartbeats, replay, failover); the worker owns what they
share: the value matrix (one row per agent), the send schedule, the timers and
the readers of the agents' sockets.
"""

from __future__ import annotations

import asyncio
import bisect
import fnmatch
import logging
import time
from typing import Any, Callable, Iterable

import numpy as np
import zmq
import zmq.asyncio

from clumon.cli.simulate import LatencyHistogram, SimConfig, series_names
from clumon.proto import __version__
from clumon.proto import transport
from clumon.proto.frames import Data, Frame, Hello, Kind, Reply, Request
from clumon.proto.runtime import QuietLog
from clumon.proto.spool import Spool
from clumon.proto.uplink import Uplink

log = logging.getLogger("clumon.simulate")

VERSION = __version__
#: the scheduler never sleeps less than this: agents that came due meanwhile go together
MIN_SLEEP = 0.02
#: uplink timers run in this many slices per period, so no tick touches every agent
TICK_SLICES = 10

Report = Callable[[str, Any], None]


class TimedSpool(Spool):
    """A memory spool that records how long each frame waited for its acknowledgement.

    The time from a frame's creation to the arrival of the root's ACK for it is
    the end-to-end figure: agent → aggregators → root commit → ACK back down. It
    hooks only the public ``add`` and ``ack_ranges`` (whatever else they take).
    """

    def __init__(self, hist: LatencyHistogram, max_bytes: int, max_age: float = 3600.0):
        super().__init__(max_bytes, max_age)
        self._hist = hist
        self._created: dict[int, float] = {}

    def add(self, seq: int, data: bytes, *args: Any, **kwargs: Any) -> None:
        self._created.setdefault(seq, time.monotonic())
        if len(self._created) > 2 * len(self) + 1000:  # frames lost to overflow: forget them
            for s in sorted(self._created)[: len(self._created) - len(self)]:
                del self._created[s]
        super().add(seq, data, *args, **kwargs)

    def ack_ranges(self, ranges: Iterable[tuple[int, int]], *args: Any, **kwargs: Any) -> int:
        ranges = list(ranges)
        now, created, hist = time.monotonic(), self._created, self._hist
        for lo, hi in ranges:
            seqs = range(lo, hi + 1) if hi - lo <= len(created) else [s for s in list(created) if lo <= s <= hi]
            for s in seqs:
                t = created.pop(s, None)
                if t is not None:
                    hist.add(now - t)
        return super().ack_ranges(ranges, *args, **kwargs)


class Readers:
    """Reads every agent's socket from one loop callback per socket.

    ``Uplink.receive`` awaits a future per message through zmq.asyncio, which costs
    more than the rest of a simulated agent together. Here each socket's FD gets a
    plain loop reader that drains the socket without blocking and hands each
    message to the uplink, as ``Uplink.receive`` would. ZeroMQ's FD is
    edge-triggered and a send can swallow an edge, so the worker also calls
    ``drain`` after it sends and on every timer tick.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._watched: dict[int, tuple[transport.Conn, int]] = {}
        self._quiet = QuietLog(log)
        self.failures = 0

    @staticmethod
    def supported(up: Uplink) -> bool:
        """Whether this Uplink exposes what the reader needs (else use ``up.receive``)."""
        return isinstance(getattr(up, "_conn", None), transport.Conn) and callable(getattr(up, "_accept", None))

    def watch(self, j: int, up: Uplink) -> None:
        """Read the uplink's current socket (again after a failover replaced it)."""
        conn = up._conn
        old = self._watched.get(j)
        if old is not None:
            if old[0] is conn:
                return
            self._forget_fd(old[1])
        fd = conn.raw.getsockopt(zmq.FD)
        self._watched[j] = (conn, fd)
        self._loop.add_reader(fd, self.drain, j, up)
        self.drain(j, up)

    def _forget_fd(self, fd: int) -> None:
        try:
            self._loop.remove_reader(fd)
        except (OSError, ValueError):
            pass

    def drain(self, j: int, up: Uplink) -> None:
        """Hand every queued message of agent j's socket to its uplink."""
        conn = up._conn
        watched = self._watched.get(j)
        if watched is None or watched[0] is not conn:
            return  # failed over: the next tick watches the new socket
        raw = conn.raw
        while True:
            try:
                parts = raw.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return  # closed under us (failover): the next tick watches the new socket
            try:
                up._accept(parts)
            except Exception:  # a handler bug must not stop this agent's reading
                self.failures += 1
                self._quiet.warn("accept", "handling a frame for %s failed", up.name, exc_info=True)
            if up._conn is not conn:
                return

    def drain_if_ready(self, j: int, up: Uplink) -> None:
        """``drain`` only when a message waits (after a send: cheaper than a failed recv)."""
        try:
            ready = up._conn.raw.getsockopt(zmq.EVENTS) & zmq.POLLIN
        except zmq.ZMQError:
            return
        if ready:
            self.drain(j, up)

    def close(self) -> None:
        for _, fd in self._watched.values():
            self._forget_fd(fd)
        self._watched.clear()


class Worker:
    """``count`` simulated agents, global indexes ``first`` .. ``first + count - 1``."""

    def __init__(self, cfg: SimConfig, first: int, count: int, report: Report):
        self.cfg = cfg
        self.first = first
        self.count = count
        self._report = report
        self.names, counters = series_names(cfg.series, cfg.counter_share)
        # dictionary order is sorted: every "sim_events_*_total" comes before every "sim_gauge_*",
        # so counters and gauges are two column slices and updates work on views
        n_counters = sum(counters)
        assert counters == [True] * n_counters + [False] * (cfg.series - n_counters)
        self._c = slice(0, n_counters)
        self._g = slice(n_counters, cfg.series)
        rng = np.random.default_rng(cfg.seed * 1_000_003 + first)
        self._rng = rng
        self.values = rng.uniform(0.0, 1.0, (count, cfg.series))
        self.values[:, self._c] = rng.integers(0, 10**9, (count, n_counters))
        self._steps = np.rint(rng.uniform(1, 1000, (count, n_counters)) * cfg.interval)
        self.stamps = np.zeros(count)
        # each agent's place in the interval, as a fraction, spread over the whole simulation
        base = first - cfg.first
        self.offsets = [(base + j) / cfg.agents for j in range(count)]
        self.uplinks: list[Uplink] = []
        self.hist = LatencyHistogram()
        self.incarnation0 = time.time_ns()
        self.replies = 0
        self.receive_failures = 0
        self.late_rounds = 0
        self.dict_version = 1
        self._ctx: zmq.asyncio.Context | None = None
        self._readers: Readers | None = None
        self._tasks: list[asyncio.Task] = []

    # --- agents ------------------------------------------------------------------------

    def _create(self, a: int, b: int) -> None:
        timings = self.cfg.timings
        loop = asyncio.get_running_loop()
        for j in range(a, b):
            name = f"{self.cfg.prefix}{self.first + j}"
            spool = TimedSpool(self.hist, self.cfg.spool_max_bytes)
            up = Uplink(self._ctx, name, self.incarnation0 + j, tuple(self.cfg.parents), timings, spool,
                        lambda frame, j=j: self._on_frame(j, frame))
            self.uplinks.append(up)
            if Readers.supported(up):
                self._readers.watch(j, up)
            else:  # an Uplink without the hooks: its own (dearer) receive task
                task = loop.create_task(up.receive(), name=f"receive-{name}")
                task.add_done_callback(self._receive_ended)
                self._tasks.append(task)

    def _receive_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.receive_failures += 1
            log.error("%s stopped receiving", task.get_name(), exc_info=task.exception())

    def _drain(self, j: int) -> None:
        if self._readers is not None:
            self._readers.drain_if_ready(j, self.uplinks[j])

    def _hello(self, name: str) -> Hello:
        inventory = {"host": name, "cores": 64, "memory_bytes": 256 * 2**30, "kernel": "simulated",
                     "boot_time": self.incarnation0 / 1e9, "software_version": VERSION, "simulated": True}
        return Hello(self.dict_version, tuple(self.names), inventory, "agent")

    def _step(self, a: int, b: int) -> None:
        """New values for agents a..b-1: noise on gauges (kept in 0..1), counters up."""
        g = self.values[a:b, self._g]
        g += self._rng.normal(0.0, 0.01, g.shape)
        np.clip(g, 0.0, 1.0, out=g)
        self.values[a:b, self._c] += self._steps[a:b]
        self.stamps[a:b] = time.time()

    def _send_data(self, a: int, b: int) -> None:
        self._step(a, b)
        dv = self.dict_version
        values = self.values
        for j in range(a, b):
            up = self.uplinks[j]
            if up.dict_version != dv:
                up.send_stored(self._hello(up.name))
            up.send_stored(Data(dv, values[j].tobytes()))
            self._drain(j)

    # --- frames from above -------------------------------------------------------------

    def _on_frame(self, j: int, frame: Frame) -> None:
        if frame.kind is Kind.REQUEST:
            self._answer(j, frame.body)
        # CONTROL (masks) and ACKs for other nodes: nothing to do for a simulated agent

    def _answer(self, j: int, req: Request) -> None:
        """A sync read: this agent's values, fresh unless its snapshot is young enough."""
        up = self.uplinks[j]
        if req.op != "read":
            up.send_body(Reply(req.id, False, None, {"code": "unknown_op", "message": f"agent has no op {req.op!r}"}))
            return
        max_age = req.args.get("max_age") or 0.0
        globs = req.args.get("series") or []
        if not isinstance(max_age, (int, float)) or max_age < 0 or not isinstance(globs, list):
            up.send_body(Reply(req.id, False, None, {"code": "bad_args", "message": "max_age or series"}))
            return
        live = bool(time.time() - self.stamps[j] > max_age)
        if live:
            self._step(j, j + 1)  # "collect now"
        ts = float(self.stamps[j])
        values = {n: [v, ts] for n, v in zip(self.names, self.values[j].tolist())
                  if not globs or any(fnmatch.fnmatchcase(n, str(g)) for g in globs)}
        up.send_body(Reply(req.id, True, {up.name: {"values": values, "live": live}}))
        self.replies += 1

    # --- schedule ----------------------------------------------------------------------

    async def _pass(self, start: float, span: float, fn: Callable[[int, int], None]) -> None:
        """Call ``fn(a, b)`` for consecutive agents as their offset within ``span`` comes."""
        cursor, n, offsets = 0, self.count, self.offsets
        while cursor < n:
            elapsed = time.monotonic() - start
            end = bisect.bisect_right(offsets, elapsed / span) if span > 0 else n
            if end > cursor:
                fn(cursor, end)
                cursor = end
            if cursor < n:
                wake = start + offsets[cursor] * span
                await asyncio.sleep(max(MIN_SLEEP, wake - time.monotonic()))

    async def _send_rounds(self, start: float) -> None:
        interval = self.cfg.interval
        while True:
            await self._pass(start, interval, self._send_data)
            start += interval
            now = time.monotonic()
            if now - start > interval:  # a whole round behind: skip it rather than burst
                self.late_rounds += 1
                start = now

    async def _tick_uplinks(self) -> None:
        """Each uplink's timers about once a period, a slice of them at a time."""
        period = min(1.0, self.cfg.heartbeat_interval / 2) / TICK_SLICES
        k = 0
        while True:
            await asyncio.sleep(period)
            for j in range(k, len(self.uplinks), TICK_SLICES):
                up = self.uplinks[j]
                up.tick()
                if self._readers is not None:
                    self._readers.watch(j, up)  # a failover replaced the socket
                    self._readers.drain(j, up)
            k = (k + 1) % TICK_SLICES

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.cfg.stats_interval / 2))
            self._report("stats", self.stats())

    def stats(self) -> dict[str, Any]:
        ups = self.uplinks
        return {
            "agents": len(ups),
            "frames_sent": sum(u.last_seq for u in ups),
            "frames_acked": sum(u.spool.acked_total for u in ups),
            "spool_frames": sum(len(u.spool) for u in ups),
            "spool_bytes": sum(u.spool.bytes for u in ups),
            "spool_dropped": sum(u.spool.dropped_total for u in ups),
            "frames_out": sum(u.frames_out for u in ups),
            "bytes_out": sum(u.bytes_out for u in ups),
            "failovers": sum(u.failovers for u in ups),
            "replies": self.replies,
            "receive_failures": self.receive_failures + (self._readers.failures if self._readers else 0),
            "late_sends": self.late_rounds,
            "hist": self.hist.sparse(),
        }

    # --- life cycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._ctx = transport.make_context()
        self._readers = Readers(asyncio.get_running_loop())
        ramp = self.cfg.ramp if self.cfg.ramp is not None else self.cfg.interval
        start = time.monotonic()
        creating = asyncio.create_task(self._pass(start, ramp, self._create))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([creating, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not creating.done():
            creating.cancel()
        else:
            self._report("ready", {"agents": self.count})
        loops = [asyncio.create_task(self._tick_uplinks()), asyncio.create_task(self._report_stats())]
        if not stop.is_set():
            sending = asyncio.create_task(self._send_rounds(start + ramp))
            await stop.wait()
            sending.cancel()
        await self._wait_for_acks()
        self._report("final", self.stats())
        for t in loops + self._tasks:
            t.cancel()
        await asyncio.gather(*loops, *self._tasks, stopped, return_exceptions=True)
        self._readers.close()
        for up in self.uplinks:
            up.close()
        self._ctx.destroy(linger=0)

    async def _wait_for_acks(self) -> None:
        """Wait (bounded) until the root acknowledged everything sent."""
        deadline = time.monotonic() + self.cfg.drain_timeout
        while time.monotonic() < deadline and any(len(u.spool) for u in self.uplinks):
            await asyncio.sleep(0.05)
