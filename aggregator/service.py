"""The aggregator daemon: children below, one parent above, nothing of its own to lose.

Children's frames go up inside BATCH frames as their original bytes; acks,
requests and controls from above are routed to the child that leads to their
node. Liveness transitions of the children, and the aggregator's own health,
are stored frames of the aggregator itself (spooled like an agent's).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import time
from collections import defaultdict, deque
from typing import Callable

import zmq.asyncio

from clumon.aggregator.config import AggregatorConfig
from clumon.aggregator.batcher import Batcher
from clumon.proto import __version__
from clumon.proto import codec, curve, runtime
from clumon.proto.downlink import Downlink
from clumon.proto.frames import Ack, Control, Data, Event, Frame, Hello, Kind, Reply, Request
from clumon.proto.liveness import Transition
from clumon.proto.spool import Spool
from clumon.proto.tree import LatestCache, Routes, walk
from clumon.proto.uplink import Uplink

log = logging.getLogger("clumon.aggregator")

#: ACKs for children go out in slices of this long (see ``_route_ack``)
ACK_SLICE_S = 0.002

HEALTH_SERIES = (
    "clumon_aggregator_frames_in_total",
    "clumon_aggregator_bytes_in_total",
    "clumon_aggregator_frames_out_total",
    "clumon_aggregator_bytes_out_total",
    "clumon_aggregator_batches_out_total",
    "clumon_aggregator_decode_errors_total",
    "clumon_aggregator_frames_unsent_total",
    "clumon_aggregator_spool_frames",
    "clumon_aggregator_spool_dropped_total",
    "clumon_aggregator_children",
    "clumon_aggregator_children_up",
    "clumon_aggregator_pending_frames",
    "clumon_aggregator_handshakes_refused_total",
    "clumon_aggregator_auth_refused_total",
)


def transition_event(t: Transition, role: str | None) -> Event:
    """The stored EVENT for a liveness transition of a direct child."""
    return Event(
        "state", t.subject, f"{t.subject}: {t.old or 'new'} -> {t.new}",
        {"old": t.old, "new": t.new, "at": t.at, "incarnation": t.incarnation,
         "last_heard": t.last_heard, "role": role or "agent"},
    )


class Aggregator:
    """One rack's aggregator."""

    def __init__(self, cfg: AggregatorConfig, ctx: zmq.asyncio.Context):
        self.cfg = cfg
        self.name = cfg.node_name
        self.incarnation = time.time_ns()
        self.spool = Spool(cfg.spool_max_bytes, cfg.spool_max_age, directory=cfg.state_dir / "spool",
                           incarnation=self.incarnation)
        self.uplink = Uplink(ctx, self.name, self.incarnation, tuple(cfg.parents), cfg.timings,
                             self.spool, self._from_parent, cfg.max_frame_bytes, curve=cfg.uplink_keys())
        #: CurveZMQ (``[curve]``): the children's keys, checked by ZAP
        self.curve = curve.Server(ctx, cfg.curve) if cfg.curve.on else None
        self.downlink = Downlink(ctx, cfg.listen, self.name, self.incarnation, self._from_child,
                                 self._transitions, cfg.heartbeat_interval, cfg.down_after,
                                 cfg.max_frame_bytes, lambda: self.uplink.root_incarnation, self._duplicate,
                                 curve=self.curve, on_refused=self._auth_refused)
        self.batcher = Batcher(self.name, self.incarnation, self.uplink.send_raw,
                               cfg.batch_max_frames, cfg.batch_max_delay, cfg.max_frame_bytes // 2,
                               cfg.max_frame_bytes)
        self.routes = Routes()
        self.cache = LatestCache()
        self.inner_errors = 0
        self._asked_hello: dict[str, float] = {}
        self._acks: deque[tuple[str, list]] = deque()
        self._acks_scheduled = False
        self._down_handlers: dict[Kind, Callable[[Frame], None]] = {
            Kind.ACK: self._route_ack,
            Kind.CONTROL: self._route_control,
            Kind.REQUEST: self._route_request,
        }

    # --- from children ---------------------------------------------------------------

    def _bad_inner(self, sender: str, why: str) -> None:
        self.inner_errors += 1
        self.downlink.decode_errors[sender] += 1

    def _from_child(self, child: str, frame: Frame, data: bytes) -> None:
        if frame.kind is Kind.REPLY:
            # replies go up at once, in an envelope of their own, so the path is kept
            self.uplink.send_raw(codec.encode_batch(self.name, self.incarnation, time.time(), [data]))
            return
        if frame.kind not in (Kind.HELLO, Kind.DATA, Kind.EVENT, Kind.LOG, Kind.BATCH):
            return
        urgent = False
        for _path, inner, _raw in walk(frame, (), data, self._bad_inner, self.cfg.max_frame_bytes):
            self.routes.learn(inner.sender, child)
            if inner.kind is Kind.HELLO:
                self.cache.hello(inner)
            elif inner.kind is Kind.DATA and not self.cache.data(inner):
                self._ask_hello(child, inner.sender)
            elif inner.kind is Kind.REPLY:
                urgent = True
        if urgent:
            # a reply from below a child aggregator: up at once, not after the batch delay
            self.uplink.send_raw(codec.encode_batch(self.name, self.incarnation, time.time(), [data]))
        else:
            self.batcher.add(data)

    def _duplicate(self, name: str, older: int, newer: int) -> None:
        self.uplink.send_stored(Event("duplicate_name", name, f"two live processes are named {name}: the newer "
                                      "one's frames are kept, the older one's refused until it stops",
                                      {"older_incarnation": older, "newer_incarnation": newer}))

    def _auth_refused(self, peer: str, key: str, why: str) -> None:
        self.uplink.send_stored(Event("auth_refused", peer, f"{self.name} refused {peer}: {why}",
                                      {"peer": peer, "key": key, "why": why, "at": self.name}))

    def _ask_hello(self, child: str, node: str) -> None:
        now = time.monotonic()
        if now - self._asked_hello.get(node, 0.0) > 5.0:
            self._asked_hello[node] = now
            self.downlink.send(child, Control("resend_hello", node, {}))

    def _transitions(self, transitions: list[Transition]) -> None:
        for t in transitions:
            log.info("child %s: %s -> %s", t.subject, t.old, t.new)
            self.uplink.send_stored(transition_event(t, self.downlink.role_of(t.subject)))

    # --- from the parent -------------------------------------------------------------

    def _from_parent(self, frame: Frame) -> None:
        handler = self._down_handlers.get(frame.kind)
        if handler is not None:
            handler(frame)

    def _route_ack(self, frame: Frame) -> None:
        """Queue an ACK's parts for the children they concern. After a long commit
        one ACK covers thousands of nodes; sent in one go it held the parent's
        next frames (a read's REQUEST) for 100-300 ms at 5,000 nodes, so the
        sends go out in slices (``_send_acks``) and the next frame is read now."""
        by_child = defaultdict(list)
        via = self.routes.via
        for entry in frame.body.entries:
            child = via.get(entry.node)
            if child is not None:
                by_child[child].append(entry)
        self._acks.extend(by_child.items())
        if not self._acks_scheduled:
            self._acks_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)

    def _send_acks(self) -> None:
        self._acks_scheduled = False  # first: an error below must not stop later ACKs
        queue, send = self._acks, self.downlink.send_ack
        until = time.monotonic() + ACK_SLICE_S
        while queue:
            child, entries = queue.popleft()
            send(child, Ack(tuple(entries)))
            if queue and time.monotonic() >= until:
                self._acks_scheduled = True
                asyncio.get_running_loop().call_soon(self._send_acks)  # the rest after other callbacks
                return

    def _route_control(self, frame: Frame) -> None:
        body: Control = frame.body
        if body.target == self.name:
            return
        child = self.routes.child_for(body.target)
        if child is not None:
            self.downlink.send(child, body)

    def _route_request(self, frame: Frame) -> None:
        """Send a request on towards its targets; a ``read`` that accepts cached values
        is answered here for the nodes whose cache is young enough (the nearest cache)."""
        req: Request = frame.body
        targets = list(req.targets)
        if req.op == "read":
            cached = self._answer_from_cache(req)
            if cached:
                self.uplink.send_body(Reply(req.id, True, cached))
                targets = [t for t in targets if t not in cached]
        by_child = defaultdict(list)
        for target in targets:
            child = self.routes.child_for(target)
            if child is not None:
                by_child[child].append(target)
        # the next hop gets less time than we had, so its answer still fits ours
        timeout = max(0.05, req.timeout * 0.8)
        for child, ts in by_child.items():
            self.downlink.send(child, Request(req.id, req.op, tuple(ts), req.args, timeout))

    def _answer_from_cache(self, req: Request) -> dict:
        max_age = req.args.get("max_age", 0)
        if not isinstance(max_age, (int, float)) or max_age <= 0:
            return {}
        globs = [g for g in req.args.get("series") or [] if isinstance(g, str)]
        now = time.time()
        out = {}
        for node in req.targets:
            values = self.cache.latest(node)
            if not values or now - max(ts for _, ts in values.values()) > max_age:
                continue
            if globs:
                values = {k: v for k, v in values.items() if any(fnmatch.fnmatchcase(k, g) for g in globs)}
            out[node] = {"values": {k: [v, ts] for k, (v, ts) in values.items()}, "live": False,
                         "served_by": self.name}
        return out

    # --- own health ------------------------------------------------------------------

    def health_values(self) -> list[float]:
        d, u, b = self.downlink, self.uplink, self.batcher
        children = d.liveness.children.values()
        return [
            d.frames_in, d.bytes_in, u.frames_out, u.bytes_out, b.batches_out,
            sum(d.decode_errors.values()), b.frames_unsent, len(self.spool),
            self.spool.dropped_total, len(children), sum(1 for c in children if c.state == "up"),
            len(b), self.curve.handshake_failures if self.curve is not None else 0, d.auth_refused,
        ]

    async def _timers(self) -> None:
        tick_every = min(self.cfg.batch_max_delay, 0.05)
        next_liveness = next_health = time.monotonic()
        while True:
            await asyncio.sleep(tick_every)
            if self.batcher.due():
                self.batcher.flush()
            now = time.monotonic()
            if now >= next_liveness:
                next_liveness = now + min(1.0, self.cfg.heartbeat_interval / 2)
                self.downlink.tick()
                self.uplink.tick()
            if now >= next_health:
                next_health = now + self.cfg.health_interval
                self.uplink.send_stored(Data.from_values(1, self.health_values()))

    # --- life cycle ------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        runtime.quiet_gc()
        await asyncio.sleep(random.uniform(0, self.cfg.jitter))
        self.uplink.send_stored(Hello(1, HEALTH_SERIES, {"host": self.name, "software_version": __version__}, "aggregator"))
        tasks = [
            asyncio.create_task(self.downlink.receive(), name="children"),
            asyncio.create_task(self.uplink.receive(), name="parent"),
            asyncio.create_task(self._timers(), name="timers"),
        ]
        runtime.notify_ready("aggregator", {"name": self.name, "listen": self.cfg.listen,
                                            "port": self.downlink.port, "parents": list(self.cfg.parents)})
        await stop.wait()
        runtime.notify_stopping()
        self.batcher.flush()
        while self._acks:  # what the root acknowledged reaches the children before we go
            child, entries = self._acks.popleft()
            self.downlink.send_ack(child, Ack(tuple(entries)))
        self.downlink.flush_acks(everything=True)
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.downlink.close()
        self.uplink.close()
        if self.curve is not None:
            self.curve.stop()
        log.info("aggregator %s stopped", self.name)
