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
import random
import time
from dataclasses import dataclass
from typing import Callable

import zmq.asyncio

from . import codec, transport
from .frames import Ack, Body, Frame, Heartbeat, Hello, Kind, STORED_KINDS, make
from .runtime import QuietLog
from .spool import Spool

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
    ):
        if not parents:
            raise ValueError("an uplink needs at least one parent endpoint")
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
        self._conn = transport.dealer(ctx, name, parents[0])
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
        self.decode_errors = 0

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
        """Number, spool and send a HELLO, DATA or EVENT body; returns its seq."""
        seq, data = self._stamp(body)
        if isinstance(body, Hello):
            self._hello_frame = data
            self._hello_seq = seq
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

    def replay(self, older_than: float = float("inf")) -> int:
        """Send the spooled frames again in seq order; the current HELLO first."""
        self.resend_hello()
        n = 0
        now = self._clock()
        for entry in self.spool.due(older_than):
            if entry.seq == self._hello_seq and entry.incarnation == self.incarnation:
                entry.sent = now
                continue
            data = self.spool.data(entry)
            if data is None:
                continue
            if not self._send(data):
                break  # not connected or queue full: the next tick tries again
            entry.sent = now
            n += 1
        return n

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
            others = []
            for entry in frame.body.entries:
                if entry.node == self.name:
                    # earlier incarnations too: frames recovered from disk after a restart
                    self.spool.ack_ranges(entry.ranges, entry.incarnation)
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
        """Receive frames from whichever parent is current, forever."""
        while True:
            conn = self._conn
            try:
                async for parts in conn.messages():
                    if conn is not self._conn:
                        break  # failed over: read from the new socket
                    self._accept(parts)
            except (asyncio.CancelledError, zmq.ZMQError):
                # _fail_over closed this socket under us, which cancels its pending
                # recv; our own cancellation, or a failure of the current socket, propagates
                task = asyncio.current_task()
                if conn is self._conn or (task is not None and task.cancelling()):
                    raise

    def _accept(self, parts: list[bytes]) -> None:
        if len(parts) != 1:
            return
        try:
            frame = codec.decode(parts[0], self._max_frame_bytes)
        except codec.DecodeError as exc:
            self.decode_errors += 1
            self._quiet.warn("parent", "bad frame from parent %s: %s", self.parent, exc)
            return
        self._heard(frame)
        self._handle(frame)

    # --- timers ------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat, resend and failover decisions; call about once a second."""
        now = self._clock()
        t = self.timings
        if now - self._last_heard > t.failover_after and len(self.parents) > 1:
            self._fail_over()
            return
        if now - self._last_sent >= t.heartbeat_interval:
            self.send_body(Heartbeat(self.root_incarnation))
        self.spool.expire()
        # Frames that stayed unacknowledged long (a restart we did not see) go again.
        # The root stores each (sender, incarnation, seq) once, so this is safe. Only
        # when some are that old: replay() resends the HELLO, the whole dictionary.
        stale = now - t.resend_after
        if next(self.spool.due(stale), None) is not None:
            self.replay(older_than=stale)

    def _fail_over(self) -> None:
        old = self.parent
        self._current = (self._current + 1) % len(self.parents)
        self.failovers += 1
        log.warning("parent %s silent for %.1fs: failing over to %s", old, self.timings.failover_after, self.parent)
        self._conn.close()
        self._conn = transport.dealer(self._ctx, self.name, self.parent)
        self.parent_incarnation = 0  # the first frame from the new parent triggers a replay
        self._last_heard = self._clock()
        self._last_sent = 0.0

    async def run_timers(self) -> None:
        """Heartbeats and failover, about every second (jittered)."""
        period = min(1.0, self.timings.heartbeat_interval / 2)
        while True:
            await asyncio.sleep(period * random.uniform(0.8, 1.2))
            self.tick()

    def close(self) -> None:
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
            "failovers": self.failovers,
            "decode_errors": self.decode_errors,
        }


__all__ = ["LinkTimings", "Uplink", "STORED_KINDS"]
