"""The agent daemon: read sources on schedule, send HELLO/DATA up, answer requests."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import zmq.asyncio

from clumon.agent.collectors import default_collectors, inventory
from clumon.agent.config import AgentConfig
from clumon.agent.sampler import Reading, Sampler
from clumon.proto import runtime
from clumon.proto.frames import Control, Data, Frame, Hello, Kind, Reply, Request
from clumon.proto.spool import Spool
from clumon.proto.uplink import Uplink
from clumon.proto.frames import Event

log = logging.getLogger("clumon.agent")

VERSION = "0.1.0"


class Agent:
    """One node's agent: a sampler feeding an uplink."""

    def __init__(self, cfg: AgentConfig, ctx: zmq.asyncio.Context):
        self.cfg = cfg
        self.name = cfg.node_name
        self.incarnation = time.time_ns()
        collectors = default_collectors(cfg.procfs, per_cpu=cfg.per_cpu, include=cfg.collectors or None)
        self.sampler = Sampler(collectors, cfg.interval, cfg.intervals)
        self.spool = Spool(cfg.spool_max_bytes, cfg.spool_max_age, directory=cfg.state_dir / "spool",
                           incarnation=self.incarnation)
        self.uplink = Uplink(
            ctx, self.name, self.incarnation, tuple(cfg.parents), cfg.timings, self.spool,
            self._on_frame, cfg.max_frame_bytes,
        )
        # one thread: collectors keep state between reads (previous CPU times)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="collect")
        self._handlers: dict[Kind, Callable[[Frame], None]] = {
            Kind.REQUEST: self._on_request,
            Kind.CONTROL: self._on_control,
        }
        self.frames_sent = 0

    # --- frames from above --------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        handler = self._handlers.get(frame.kind)
        if handler is not None:
            handler(frame)

    def _on_control(self, frame: Frame) -> None:
        log.info("ignoring CONTROL %s", frame.body.op)

    def _on_request(self, frame: Frame) -> None:
        req: Request = frame.body
        asyncio.get_running_loop().create_task(self._answer(req))

    async def _answer(self, req: Request) -> None:
        if req.op != "read":
            self.uplink.send_body(Reply(req.id, False, None, {"code": "unknown_op", "message": f"agent has no op {req.op!r}"}))
            return
        max_age = float(req.args.get("max_age", 0.0) or 0.0)
        now = time.time()
        oldest = min((ts for _, ts in self.sampler.snapshot.values()), default=0.0)
        live = not self.sampler.snapshot or now - oldest > max_age
        if live:
            reading = await self._read(self.sampler.sources)
            await self._publish(reading)
        result = {
            self.name: {
                "values": {k: [v, ts] for k, (v, ts) in self.sampler.snapshot.items()},
                "live": live,
            }
        }
        self.uplink.send_body(Reply(req.id, True, result))

    # --- reading and sending --------------------------------------------------------

    async def _read(self, sources) -> Reading:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.sampler.read, sources)

    def _hello(self) -> Hello:
        inv = dict(self._inventory)
        return Hello(self.sampler.dictionary.version, tuple(self.sampler.dictionary.names), inv, "agent")

    async def _publish(self, reading: Reading) -> None:
        if reading.dictionary_changed or self.uplink.dict_version != self.sampler.dictionary.version:
            self.uplink.send_stored(self._hello())
        if not reading.values:
            return
        d = self.sampler.dictionary
        index, values = d.columns(reading.values)
        self.uplink.send_stored(Data.from_values(d.version, values, index))
        self.frames_sent += 1

    async def collect_loop(self) -> None:
        """Read due sources on schedule and send what they produced."""
        while True:
            due = self.sampler.due()
            if due:
                reading = await self._read(due)
                await self._publish(reading)
            delay = self.sampler.next_due() - time.monotonic()
            await asyncio.sleep(max(0.01, delay))

    # --- life cycle -----------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._inventory = await loop.run_in_executor(self._executor, self._static_facts)
        await asyncio.sleep(random.uniform(0, self.cfg.jitter))
        first = await self._read(self.sampler.sources)
        tasks = [
            asyncio.create_task(self.uplink.receive(), name="uplink-receive"),
            asyncio.create_task(self.uplink.run_timers(), name="uplink-timers"),
        ]
        await self._publish(first)
        tasks.append(asyncio.create_task(self.collect_loop(), name="collect"))
        runtime.notify_ready("agent", {"name": self.name, "parents": list(self.cfg.parents),
                                       "series": len(self.sampler.dictionary.names)})
        await stop.wait()
        runtime.notify_stopping()
        tasks[-1].cancel()
        await self._drain()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.uplink.close()
        self._executor.shutdown(wait=False)
        log.info("agent %s stopped (%d frames unacknowledged)", self.name, len(self.spool))

    async def _drain(self) -> None:
        """Give the root a moment to acknowledge what was sent."""
        deadline = time.monotonic() + self.cfg.drain_timeout
        while len(self.spool) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _static_facts(self) -> dict[str, Any]:
        inv = inventory(self.cfg.procfs)
        inv["software_version"] = VERSION
        return inv


def serve(cfg: AgentConfig, ctx: zmq.asyncio.Context) -> Callable[[asyncio.Event], Any]:
    agent = Agent(cfg, ctx)
    return agent.serve
