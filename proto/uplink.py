"""The child side of a link: one DEALER to the current parent.

Shared by the agent and the aggregator. It numbers and spools stored frames,
sends heartbeats when idle, forgets frames the root acknowledged, replays the
spool when the parent (or the root behind it) restarted or after a failover, and
fails over to the next configured parent when the current one has been silent for
``failover_after`` — never because acks are slow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from . import codec, transport
from .frames import Ack, Body, Event, Frame, Heartbeat, Hello, Kind, make
from .runtime import QuietLog
from .spool import Spool, SpoolEntry

log = logging.getLogger("clumon.uplink")


@dataclass(frozen=True, slots=True)
class LinkTimings:
    """Timings of a child's link; configs embed these so tests pass short ones."""

    heartbeat_interval: float = 5.0
    failover_after: float = 15.0
    resend_after: float = 30.0
    jitter: float = 1.0


class Uplink:
    """Sends a sender's frames up the tree and receives what comes down."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        name: str,
        incarnation: int,
        parents: tuple[str, ...],
        timings: LinkTimings,
        spool: Spool,
        on_frame: Callable[[Frame], None],
        max_frame_bytes: int = codec.MAX_FRAME_BYTES,
        clock: Callable[[], float] = time.monotonic,
        curve: tuple | None = None,
    ):
        """``curve``: CurveZMQ keys (``proto.curve.ClientKeys``), one per parent."""
        if not parents:
            raise ValueError("an uplink needs at least one parent endpoint")
        if curve is not None and len(curve) != len(parents):
            raise ValueError("one set of curve keys per parent")
        self._curve = curve
        self.name = name
        self.incarnation = incarnation
        self.parents = parents
        self.timings = timings
        self.spool = spool
        self._on_frame = on_frame
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        self._ctx = ctx
        self._current = 0
        self._conn = transport.dealer(ctx, name, parents[0], max_bytes=max_frame_bytes,
                                      heartbeat=timings.heartbeat_interval, curve=self._keys(0))
        self._seq = 0
        self._hello_frame: bytes | None = None
        self._hello_seq = 0
        self.dict_version = 0
        self.parent_incarnation = 0
        #: the root's incarnation as heartbeats from above report it
        self.root_incarnation = 0
        self._last_heard = clock()
        self._last_sent = 0.0
        self._quiet = QuietLog(log)
        self.frames_out = 0
        self.bytes_out = 0
        self.failovers = 0
        self.reconnects = 0
        self._last_ack = clock()
        self._max_acked = 0
        self._probe: zmq.Socket | None = None
        self._probe_monitor: zmq.Socket | None = None
        self.decode_errors = 0
        #: ACK frames from the parent (each one a wake-up: see ``ack_every``)
        self.acks_in = 0
        self._receiving = False
        #: told of the seq ranges of this incarnation the root acknowledged (the log
        #: watch keeps a file position only once the lines before it are stored)
        self.on_acked: Callable[[tuple[tuple[int, int], ...]], None] | None = None

    # --- sending ---------------------------------------------------------------

    @property
    def parent(self) -> str:
        return self.parents[self._current]

    @property
    def last_seq(self) -> int:
        return self._seq

    def _stamp(self, body: Body) -> tuple[int, bytes]:
        self._seq += 1
        frame = make(self.name, self.incarnation, time.time(), body, self._seq)
        return self._seq, codec.encode(frame)

    def send_stored(self, body: Body) -> int:
        """Number, spool and send a HELLO, DATA, EVENT or LOG body; returns its seq."""
        seq, data = self._stamp(body)
        if isinstance(body, Hello):
            self._hello_frame = data
            self._hello_seq = seq
            self.spool.pin(seq, self.incarnation)
            self.dict_version = body.dict_version
        self.spool.add(seq, data, self.incarnation)
        self._send_spooled(seq, data)
        return seq

    def _send_spooled(self, seq: int, data: bytes) -> None:
        if self._send(data):
            self.spool.mark_sent(seq, self._clock(), self.incarnation)

    def send_body(self, body: Body) -> bool:
        """Send a frame that is not stored (REPLY, HEARTBEAT, ...)."""
        return self._send(codec.encode(make(self.name, self.incarnation, time.time(), body)))

    def send_raw(self, data: bytes) -> bool:
        """Send already-encoded bytes (an aggregator's BATCH)."""
        return self._send(data)

    def _send(self, data: bytes) -> bool:
        ok = self._conn.send([data])
        if ok:
            self._last_sent = self._clock()
            self.frames_out += 1
            self.bytes_out += len(data)
        return ok

    def resend_hello(self) -> None:
        """Send the current HELLO again, same bytes and seq (the root stores it once)."""
        if self._hello_frame is not None and self._send(self._hello_frame):
            self.spool.mark_sent(self._hello_seq, self._clock(), self.incarnation)

    def replay(self, older_than: float = float("inf"), hello: bool = True,
               only: Callable[[SpoolEntry], bool] | None = None) -> int:
        """Send spooled frames again in seq order (the current HELLO first when
        ``hello``): those last sent before ``older_than`` and accepted by ``only``."""
        if hello:
            self.resend_hello()
        n = 0
        now = self._clock()
        for entry in self.spool.due(older_than):
            if entry.seq == self._hello_seq and entry.incarnation == self.incarnation and hello:
                entry.sent = now
                continue
            if only is not None and not only(entry):
                continue
            data = self.spool.data(entry)
            if data is None:
                continue
            if not self._send(data):
                break  # not connected or queue full: the next tick tries again
            entry.sent = now
            n += 1
        return n

    def _lost_in_flight(self, entry: SpoolEntry) -> bool:
        """Whether a stale unacknowledged frame should go again.

        Never sent, from an earlier incarnation, older than a frame already
        acknowledged (a gap: it was lost on the way), or acks have stalled. A frame
        merely waiting behind a busy root's backlog is left alone, so a slow root is
        not handed duplicates exactly when it is behind.
        """
        if entry.sent == 0.0 or entry.incarnation != self.incarnation or entry.seq < self._max_acked:
            return True
        return self._clock() - self._last_ack > self.timings.resend_after

    # --- receiving ---------------------------------------------------------------

    def _heard(self, frame: Frame) -> None:
        self._last_heard = self._clock()
        replay = False
        if frame.incarnation != self.parent_incarnation:
            if self.parent_incarnation:
                log.info("parent %s restarted (incarnation %d)", self.parent, frame.incarnation)
            self.parent_incarnation = frame.incarnation
            replay = True
        if frame.kind is Kind.HEARTBEAT:
            root = frame.body.root
            if root and root != self.root_incarnation:
                if self.root_incarnation:
                    log.info("root restarted (incarnation %d): replaying %d frames", root, len(self.spool))
                self.root_incarnation = root
                replay = True
        if replay:
            self.replay()

    def _handle(self, frame: Frame) -> None:
        if frame.kind is Kind.ACK:
            self.acks_in += 1
            others = []
            for entry in frame.body.entries:
                if entry.node == self.name:
                    # earlier incarnations too: frames recovered from disk after a restart
                    if self.spool.ack_ranges(entry.ranges, entry.incarnation):
                        self._last_ack = self._clock()
                    if entry.incarnation == self.incarnation and entry.ranges:
                        self._max_acked = max(self._max_acked, max(hi for _, hi in entry.ranges))
                        if self.on_acked is not None:
                            self.on_acked(entry.ranges)
                else:
                    others.append(entry)
            if others:
                self._on_frame(Frame(Kind.ACK, frame.sender, frame.incarnation, frame.ts, Ack(tuple(others))))
            return
        if frame.kind is Kind.HEARTBEAT:
            return
        if frame.kind is Kind.CONTROL and frame.body.op == "resend_hello" and frame.body.target == self.name:
            self.resend_hello()
            return
        self._on_frame(frame)

    async def receive(self) -> None:
        """Receive frames from whichever parent is current, until cancelled.

        Frames are handled in a reader callback of the current socket (``Conn.watch``):
        no future per frame, which is most of what an agent's loop does per ACK.
        A failover watches the new socket (``_switch``).
        """
        self.start_receiving()
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self._receiving = False

    def start_receiving(self) -> None:
        """Handle frames from whichever parent is current in a reader callback of
        its socket, from now until ``close`` (no task: a simulator runs thousands)."""
        self._receiving = True
        self._conn.watch(self._accept)

    def _accept(self, parts: list[bytes]) -> None:
        if len(parts) != 1:
            return
        try:
            frame = codec.decode(parts[0], self._max_frame_bytes)
        except codec.DecodeError as exc:
            self.decode_errors += 1
            self._quiet.warn("parent", "bad frame from parent %s: %s", self.parent, exc)
            return
        try:
            self._heard(frame)
            self._handle(frame)
        except Exception:  # a handler bug must not leave the child deaf
            log.exception("handling a frame from parent %s failed", self.parent)

    # --- timers ------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat, resend, loss report and failover decisions; call about once a second."""
        now = self._clock()
        t = self.timings
        self.spool.flush()  # ack records that no frame's write took along
        if now - self._last_heard > t.failover_after:
            if len(self.parents) > 1:
                self._fail_over()
            else:
                self._reconnect()
            return
        if self._current != 0 and self._preferred_is_back():
            log.info("preferred parent %s is back: returning to it", self.parents[0])
            self._switch(0)
            return
        self._report_loss()
        if now - self._last_sent >= t.heartbeat_interval:
            self.send_body(Heartbeat(self.root_incarnation))
        self.spool.expire()
        # Frames that stayed unacknowledged long and look lost (a restart we did not
        # see, a batch an aggregator could not forward) go again; the root stores each
        # (sender, incarnation, seq) once. The HELLO goes only if it is such a frame.
        stale = now - t.resend_after
        if next(self.spool.due(stale), None) is not None:
            self.replay(older_than=stale, hello=False, only=self._lost_in_flight)

    def _report_loss(self) -> None:
        """Frames the spool dropped on overflow become an EVENT — never silent.

        Counts are cumulative, so the newest stored loss EVENT gives the exact count
        even if an earlier loss EVENT was itself dropped. ``dropped_unsent_total``
        counts frames that never left this process (surely lost); the others were
        sent but not yet acknowledged, and may well be stored.
        """
        n = self.spool.take_drop_count()
        if n:
            total, unsent = self.spool.dropped_total, self.spool.dropped_unsent_total
            log.error("spool overflow: dropped %d oldest frames (%d in all, %d never sent)", n, total, unsent)
            self.send_stored(Event("spool_overflow", self.name,
                                   f"spool full: dropped the {n} oldest unacknowledged frames "
                                   f"({total} in all; {unsent} of them never sent, so surely lost)",
                                   {"dropped": n, "dropped_total": total, "dropped_unsent_total": unsent}))

    def _preferred_is_back(self) -> bool:
        """Whether the first parent accepts connections again.

        A probe DEALER that sends nothing is connected to it; its socket monitor
        reports when the TCP connection succeeds. The parent's application never
        sees the probe, so it registers no phantom child.
        """
        if self._probe is None:
            sync_ctx = zmq.Context.shadow(self._ctx.underlying)
            self._probe = sync_ctx.socket(zmq.DEALER)
            self._probe.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                self._curve[0].secure(self._probe)
            self._probe_monitor = self._probe.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self._probe.connect(self.parents[0])
            return False
        try:
            while True:
                event = recv_monitor_message(self._probe_monitor, zmq.NOBLOCK)
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._close_probe()
                    return True
        except zmq.Again:
            return False

    def _keys(self, index: int):
        return self._curve[index] if self._curve is not None else None

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.disable_monitor()
            self._probe_monitor.close(0)
            self._probe.close(0)
            self._probe = self._probe_monitor = None

    def _fail_over(self) -> None:
        old = self.parent
        self.failovers += 1
        log.warning("parent %s silent for %.1fs: failing over to %s", old, self.timings.failover_after,
                    self.parents[(self._current + 1) % len(self.parents)])
        self._switch((self._current + 1) % len(self.parents))

    def _reconnect(self) -> None:
        """Our only parent has sent nothing, not even a heartbeat: connect anew. A
        link can be up while the parent no longer reads it (its ROUTER handed our
        routing id to another process of the same name); waiting would be silence
        for good."""
        self.reconnects += 1
        log.warning("parent %s silent for %.1fs: reconnecting", self.parent, self.timings.failover_after)
        self._switch(self._current)

    def _switch(self, index: int) -> None:
        self._close_probe()
        self._current = index
        self._conn.close()
        self._conn = transport.dealer(self._ctx, self.name, self.parent, max_bytes=self._max_frame_bytes,
                                      heartbeat=self.timings.heartbeat_interval, curve=self._keys(index))
        if self._receiving:
            self._conn.watch(self._accept)
        self.parent_incarnation = 0  # the first frame from the new parent triggers a replay
        self._last_heard = self._clock()
        self._last_sent = 0.0

    @property
    def tick_period(self) -> float:
        """How often ``tick`` wants to run: every second, or more often with short heartbeats."""
        return min(1.0, self.timings.heartbeat_interval / 2)

    def close(self) -> None:
        self._close_probe()
        self._conn.close()
        self.spool.close()

    def stats(self) -> dict[str, float]:
        """The link's own health figures."""
        return {
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "spool_frames": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "spool_dropped_total": self.spool.dropped_total,
            "spool_disk_errors": self.spool.disk_errors,
            "failovers": self.failovers,
            "reconnects": self.reconnects,
            "decode_errors": self.decode_errors,
            "acks_in": self.acks_in,
        }

