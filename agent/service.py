"""The agent daemon: read sources on schedule, send HELLO/DATA up, answer requests."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable

import zmq.asyncio

from clumon.agent import maskstate
from clumon.proto import __version__
from clumon.agent.collectors import Sample, default_collectors, inventory
from clumon.agent.collectors.agentself import AgentSelfCollector
from clumon.agent.config import AgentConfig
from clumon.agent.masks import Filter
from clumon.agent.sampler import Reading, Sampler, SeriesDictionary
from clumon.agent.shared_reads import SharedReads
from clumon.proto import runtime
from clumon.proto.frames import Control, Data, Event, Frame, Heartbeat, Hello, Kind, Reply, Request
from clumon.proto.spool import Spool
from clumon.proto.uplink import Uplink
from clumon.proto.maskrules import MaskError, MaskSet

log = logging.getLogger("clumon.agent")

VERSION = __version__

#: sources due this close after a timer fires are read by that wake-up
TIMER_SLACK_S = 0.005


class Agent:
    """One node's agent: a sampler feeding masks feeding an uplink."""

    def __init__(self, cfg: AgentConfig, ctx: zmq.asyncio.Context):
        self.cfg = cfg
        self.name = cfg.node_name
        self.incarnation = time.time_ns()
        collectors = default_collectors(cfg.procfs, per_cpu=cfg.per_cpu, include=cfg.collectors or None)
        self._startup_events: list[Event] = []
        plugged: list = []
        if cfg.entry_points:
            from clumon.agent.plugins import entry_point_collectors
            plugged, errors = entry_point_collectors({c.name for c in collectors})
            self._startup_events += [Event("plugin_failed", self.name, msg, attrs) for msg, attrs in errors]
        self.sampler = Sampler([*collectors, *plugged], cfg.interval, cfg.intervals,
                               ratio_digits=cfg.ratio_digits)
        for src in self.sampler.sources[len(collectors):]:
            src.check = True
        # on disk under the state directory: a killed agent's unacknowledged frames
        # are recovered and replayed by the next one
        self.spool = Spool(cfg.spool_max_bytes, cfg.spool_max_age, directory=cfg.state_dir / "spool",
                           incarnation=self.incarnation)
        self.uplink = Uplink(
            ctx, self.name, self.incarnation, tuple(cfg.parents), cfg.timings, self.spool,
            self._on_frame, cfg.max_frame_bytes, curve=cfg.uplink_keys(),
        )
        for c in collectors:
            if isinstance(c, AgentSelfCollector):
                c.bind(self.uplink.stats)
        kept = maskstate.load(cfg.state_dir)
        self.masks_set_at = kept[1] if kept else None
        self.filter = Filter(kept[0] if kept else cfg.masks.mask_set())
        # one thread: collectors keep state between reads (previous CPU times)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="collect")
        self.reads = SharedReads(self.sampler, self._executor, self._publish, on_read=self._arm)
        #: the one timer of the loop: due sources and the uplink's tick
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._last_link_tick = 0.0
        self.exec_plugins = None
        if cfg.plugin_dir:
            from clumon.agent.execplugins import ExecPlugins
            self.exec_plugins = ExecPlugins(Path(cfg.plugin_dir), cfg.plugin_interval, cfg.plugin_timeout,
                                            cfg.intervals, self._plugin_samples, self._plugin_event, self.name)
        self.scheduler = None
        if cfg.scheduler is not None:
            from clumon.agent.scheduler import collector, config as scheduler_config
            self.scheduler = collector.SchedulerSource(scheduler_config.parse(cfg.scheduler), self._plugin_samples,
                                                       self._plugin_event, self.name)
        self.watch = None
        if cfg.service or cfg.processes is not None or cfg.rule:
            from clumon.agent.watch.watcher import Watcher
            self.watch = Watcher(cfg.service, cfg.processes, cfg.rule, self.name, cfg.state_dir, cfg.procfs,
                                 self._plugin_samples, self._plugin_event)
        self.logs = None
        if cfg.log:
            from clumon.agent.logs.watch import LogWatch
            self.logs = LogWatch(cfg.log, cfg.log_rule, cfg.log_default_rules, self.name, cfg.state_dir,
                                 cfg.log_poll_interval, self.uplink.send_stored, self._plugin_samples,
                                 self._plugin_event, holds=self.spool.holds)
            self.uplink.on_acked = self.logs.acked
        self._handlers: dict[Kind, Callable[[Frame], None]] = {
            Kind.REQUEST: self._on_request,
            Kind.CONTROL: self._on_control,
        }
        self._controls: dict[str, Callable[[Control], None]] = {"set_masks": self._set_masks}
        self._ops: dict[str, Callable[[Request], Awaitable[Any]]] = {
            "read": self._answer_read,
            "masks": self._answer_masks,
            "stats": self._answer_stats,
            # every agent answers these: a site-wide ask waits for nobody
            "services": self._no_services, "service": self._no_service, "procs": self._no_service,
        }
        if self.watch is not None:
            w = self.watch
            self._ops.update({"services": lambda r: w.answer_services(r.args), "service": lambda r: w.answer_service(r.args),
                              "procs": lambda r: w.answer_procs(r.args)})
        self.frames_sent = 0
        #: wake-ups of the schedule's timer (bench/agent_overhead.py reports them a second)
        self.timer_fires = 0
        self._stopping = False
        self._inventory: dict[str, Any] = {}

    # --- frames from above --------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        handler = self._handlers.get(frame.kind)
        if handler is not None:
            handler(frame)

    def _on_control(self, frame: Frame) -> None:
        body: Control = frame.body
        handler = self._controls.get(body.op)
        if handler is None or body.target != self.name:
            log.info("ignoring CONTROL %s for %s", body.op, body.target)
            return
        handler(body)

    def _set_masks(self, body: Control) -> None:
        """Replace the mask set (or go back to the configured one) and keep it."""
        args = body.args if isinstance(body.args, dict) else {}
        loop = asyncio.get_running_loop()
        if args.get("reset"):
            self.filter.replace(self.cfg.masks.mask_set())
            self.masks_set_at = None
            loop.run_in_executor(self._executor, maskstate.clear, self.cfg.state_dir)
            log.info("masks reset to the configured set")
            return
        base = self.cfg.masks
        try:
            masks = MaskSet.from_dict({
                "rules": args.get("masks", []),
                **{k: args.get(k, getattr(base, k)) for k in ("min_change", "min_change_abs", "max_silence")},
            })
        except MaskError as exc:
            log.warning("rejected set_masks: %s", exc)
            self.uplink.send_stored(Event("masks_rejected", self.name, str(exc), {"args": args}))
            return
        self.filter.replace(masks)
        self.masks_set_at = time.time()
        loop.run_in_executor(self._executor, maskstate.save, self.cfg.state_dir, masks, self.masks_set_at)
        log.info("masks replaced: %s", "; ".join(r.text() for r in masks.rules) or "(no rules)")

    def _on_request(self, frame: Frame) -> None:
        asyncio.get_running_loop().create_task(self._answer(frame.body))

    async def _answer(self, req: Request) -> None:
        op = self._ops.get(req.op)
        if op is None:
            self.uplink.send_body(Reply(req.id, False, None, {"code": "unknown_op", "message": f"agent has no op {req.op!r}"}))
            return
        try:
            result = await op(req)
        except (TypeError, ValueError) as exc:
            self.uplink.send_body(Reply(req.id, False, None, {"code": "bad_args", "message": str(exc)}))
            return
        self.uplink.send_body(Reply(req.id, True, {self.name: result}))

    async def _answer_read(self, req: Request) -> dict:
        globs = req.args.get("series") or []
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ValueError("argument 'series': expected a list of globs")
        max_age = req.args.get("max_age") or 0.0
        if not isinstance(max_age, (int, float)) or max_age < 0:
            raise ValueError("argument 'max_age': expected seconds >= 0")
        return await self.reads.answer(globs, float(max_age))

    async def _no_services(self, req: Request) -> list:
        return []

    async def _no_service(self, req: Request) -> dict:
        name = req.args.get("name") if isinstance(req.args, dict) else None
        return {"service": name, "error": "no services or processes watched here (no [[service]] or [processes])"}

    async def _answer_masks(self, req: Request) -> dict:
        return {**self.filter.masks.as_dict(), "source": "config" if self.masks_set_at is None else "control",
                "set_at": self.masks_set_at}

    async def _answer_stats(self, req: Request) -> dict:
        """The agent's own figures (bench/agent_overhead.py reads these)."""
        durations = sorted(self.reads.durations)
        f = self.filter
        return {
            "series": len(self.sampler.dictionary.names),
            "dict_version": self.sampler.dictionary.version,
            "values_collected": self.reads.values_collected,
            "values_passed": f.passed, "values_masked": f.masked, "values_suppressed": f.suppressed,
            "reads": len(durations), "reads_shared": self.reads.shared, "timer_fires": self.timer_fires,
            "collect_p50_ms": runtime.percentile(durations, 50) * 1e3,
            "collect_p99_ms": runtime.percentile(durations, 99) * 1e3,
            "sources": {s.collector.name: {"interval": s.interval, "reads": s.reads, "errors": s.errors,
                                           "failure": s.failure, "series": len(s.names)}
                        for s in self.sampler.sources},
            **self.uplink.stats(),
            **({"watch_checks": self.watch.checks, "watch_check_ms": round(self.watch.check_ms, 3),
                "watch_cpu_s": round(self.watch.cpu_s, 4)} if self.watch is not None else {}),
            **(self.logs.stats() if self.logs is not None else {}),
            **({"durations_ms": [round(d * 1e3, 4) for d in self.reads.durations]} if req.args.get("durations") else {}),
        }

    # --- reading and sending --------------------------------------------------------

    def _hello(self, d: SeriesDictionary) -> Hello:
        return Hello(d.version, tuple(d.names), dict(self._inventory), "agent")

    def _publish(self, reading: Reading) -> None:
        """Send what a reading changed: a new HELLO, failures, and the values that pass."""
        if reading.gone:
            self.filter.forget(reading.gone)
        for source, message in reading.failures:
            self.uplink.send_stored(Event("source_failed", self.name, message, {"source": source}))
        if not reading.scheduled:
            # a sync read between ticks answered its asker; only the schedule's reads
            # are stored (a new dictionary goes up with the next one's HELLO)
            return
        parts = reading.parts
        # one dictionary for the whole frame: the collecting thread may put a new one
        # in place meanwhile (its own publish then sends that one's HELLO)
        d = self.sampler.dictionary
        if reading.dictionary_changed or self.uplink.dict_version != d.version:
            self.uplink.send_stored(self._hello(d))
            # every series passes afresh at its source's next read (a receiver keeps
            # the newest value of each by name across dictionaries); values read
            # before now are not sent again: they would be stored twice
            self.filter.resend_all()
        # the read's own time: a 30 s source whose reads took 80 ms and then 10 ms
        # is still 30 s apart for max_silence
        names, values = self.filter.apply_columns(parts, reading.mono)
        if names:
            index, column = d.columns_of(names, values)
            self.uplink.send_stored(Data.from_values(d.version, column, index))
            self.frames_sent += 1

    def _plugin_samples(self, name: str, interval: float, samples: list) -> None:
        src = self.sampler.source(name) or self.sampler.add_pushed(_Pushed(name, interval), interval)
        self._publish(self.sampler.absorb(src, samples))

    def _plugin_event(self, event: Event) -> None:
        self.uplink.send_stored(event)

    def _on_timer(self) -> None:
        """Start reading the due sources and tick the uplink, then sleep again.

        One timer serves both, so an idle agent wakes once a second, not once for
        each. The uplink ticks at a wake-up once 0.8 of its period has passed (so
        it rides along with a 1 s collection) and at the latest after 1.2 periods.
        """
        self._timer = None
        self.timer_fires += 1
        now = time.monotonic()
        try:
            if not self.reads.busy and not self._stopping:
                # uvloop's timers keep milliseconds of a clock cached per iteration, so
                # they fire up to ~1 ms early by time.monotonic(): without the slack a
                # source due then waits for a second wake-up just after (1.7 wake-ups
                # a second instead of 1). Reading a few ms early keeps the phase.
                due = self.sampler.due(now + TIMER_SLACK_S)
                if due:
                    self.reads.start(due, inline=True)
            if now - self._last_link_tick >= 0.8 * self.uplink.tick_period:
                self._last_link_tick = now
                self.uplink.tick()
        finally:
            # whatever failed above, the schedule goes on: a dead timer would be a
            # silent node whose process still runs
            self._arm()

    def _arm(self) -> None:
        """(Re)set the timer for the next due source or uplink tick.

        While a read is in flight the sources' phases are being moved in the
        collecting thread; the read's end calls this again. After SIGTERM only
        the uplink ticks (heartbeats while the spool drains).
        """
        wake = self._last_link_tick + 1.2 * self.uplink.tick_period
        if not self.reads.busy and not self._stopping:
            wake = min(wake, self.sampler.next_due())
        if self._timer is not None:
            if self._wake_at <= wake:
                return
            self._timer.cancel()
        self._wake_at = wake
        self._timer = asyncio.get_running_loop().call_later(max(0.0, wake - time.monotonic()), self._on_timer)

    # --- life cycle -----------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._inventory = await loop.run_in_executor(self._executor, self._static_facts)
        await asyncio.sleep(random.uniform(0, self.cfg.jitter))
        tasks = [asyncio.create_task(self.uplink.receive(), name="uplink-receive")]
        await self.reads.read([s for s in self.sampler.sources if not s.pushed])
        for event in self._startup_events:
            self.uplink.send_stored(event)
        # What exists now (modules, collectors, the dictionary) lives as long as the
        # process: the cyclic collector need not walk it again at every full pass.
        gc.freeze()
        if self.exec_plugins is not None:
            tasks.append(asyncio.create_task(self.exec_plugins.run(), name="exec-plugins"))
        if self.scheduler is not None:
            tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        if self.watch is not None:
            tasks.append(asyncio.create_task(self.watch.run(), name="watch"))
        if self.logs is not None:
            tasks.append(asyncio.create_task(self.logs.run(), name="logs"))
        self._last_link_tick = time.monotonic()
        self._arm()
        runtime.notify_ready("agent", {"name": self.name, "parents": list(self.cfg.parents),
                                       "series": len(self.sampler.dictionary.names)})
        await stop.wait()
        runtime.notify_stopping()
        self._stopping = True
        if self.exec_plugins is not None:
            await self.exec_plugins.stop()
        await self._drain()
        if self._timer is not None:
            self._timer.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.watch is not None:
            await self.watch.close()
        if self.logs is not None:
            await self.logs.close()
        self.uplink.close()
        self._executor.shutdown(wait=False)
        log.info("agent %s stopped (%d frames unacknowledged)", self.name, len(self.spool))

    async def _drain(self) -> None:
        """Give the root a moment to acknowledge what was sent.

        A HEARTBEAT first: a parent holding this agent's ACKs (``ack_every``)
        sends them at once, and the ones still to come too, until the agent sends
        a stored frame again; so a frame sent meanwhile (a read that was in flight,
        a REPLY) is followed by another HEARTBEAT."""
        deadline = time.monotonic() + self.cfg.drain_timeout
        said = -1
        while len(self.spool) and time.monotonic() < deadline:
            if self.uplink.frames_out != said:
                self.uplink.send_body(Heartbeat(self.uplink.root_incarnation))
                said = self.uplink.frames_out
            await asyncio.sleep(0.05)

    def _static_facts(self) -> dict[str, Any]:
        inv = inventory(self.cfg.procfs)
        inv["software_version"] = VERSION
        if self.cfg.ack_every > 0:
            inv["ack_every"] = self.cfg.ack_every
        return inv


def serve(cfg: AgentConfig, ctx: zmq.asyncio.Context) -> Callable[[asyncio.Event], Any]:
    agent = Agent(cfg, ctx)
    return agent.serve


class _Pushed:
    """The collector face of a source whose samples are pushed (an executable plugin)."""

    def __init__(self, name: str, interval: float):
        self.name = name
        self.default_interval = interval

    def collect(self) -> list[Sample]:  # never called: the sampler does not schedule pushed sources
        return []
