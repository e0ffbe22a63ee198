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
from clumon.proto.curve import ClientKeys, load_public, load_secret
from clumon.proto.frames import Data, Frame, Hello, Kind, Reply, Request
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


class Worker:
    """``count`` simulated agents, global indexes ``first`` .. ``first + count - 1``."""

    def __init__(self, cfg: SimConfig, first: int, count: int, report: Report):
        self.cfg = cfg
        self.first = first
        self.count = count
        self._report = report
        self.names, counters = series_names(cfg.series, cfg.counter_share, cfg.node_series)
        # dictionary order is sorted: every counter comes before every gauge (series_names),
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
        self.late_rounds = 0
        self.dict_version = 1
        self._ctx: zmq.asyncio.Context | None = None
        #: the parents' public keys (CurveZMQ), one per parent; None: no keys
        self._servers = tuple(load_public(k) for k in cfg.parent_key_files()) if cfg.keys else None

    # --- agents ------------------------------------------------------------------------

    def _create(self, a: int, b: int) -> None:
        timings = self.cfg.timings
        for j in range(a, b):
            name = f"{self.cfg.prefix}{self.first + j}"
            spool = TimedSpool(self.hist, self.cfg.spool_max_bytes)
            up = Uplink(self._ctx, name, self.incarnation0 + j, tuple(self.cfg.parents), timings, spool,
                        lambda frame, j=j: self._on_frame(j, frame), curve=self._curve(name))
            self.uplinks.append(up)
            up.start_receiving()  # a loop reader per socket (Conn.watch), no task per agent

    def _curve(self, name: str) -> tuple[ClientKeys, ...] | None:
        """The agent's keys for each parent, as a real agent's ``[curve]`` gives them."""
        if self._servers is None:
            return None
        public, secret = load_secret(self.cfg.secret_key(name))
        return tuple(ClientKeys(public, secret, server) for server in self._servers)

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
            "late_sends": self.late_rounds,
            "hist": self.hist.sparse(),
        }

    # --- life cycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._ctx = transport.make_context()
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
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, stopped, return_exceptions=True)
        for up in self.uplinks:
            up.close()
        self._ctx.destroy(linger=0)

    async def _wait_for_acks(self) -> None:
        """Wait (bounded) until the root acknowledged everything sent."""
        deadline = time.monotonic() + self.cfg.drain_timeout
        while time.monotonic() < deadline and any(len(u.spool) for u in self.uplinks):
            await asyncio.sleep(0.05)
