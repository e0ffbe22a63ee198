"""The parent side of links: one ROUTER for all children.

Shared by the aggregator and the root. It checks and parses every frame (size
before unpacking, strict decode), counts and quietly logs bad ones per sender,
tracks the children's liveness, heartbeats down, and hands good frames on. It
never raises out of the receive loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Callable

import zmq.asyncio

from . import codec, transport
from .frames import Ack, AckEntry, Body, Frame, Heartbeat, Kind, make, merge_ranges
from .liveness import Liveness, Transition
from .runtime import QuietLog

log = logging.getLogger("clumon.downlink")

FrameHandler = Callable[[str, Frame, bytes], None]
TransitionHandler = Callable[[list[Transition]], None]


class Downlink:
    """Children of one parent, over one ROUTER socket."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        bind: str,
        name: str,
        incarnation: int,
        on_frame: FrameHandler,
        on_transitions: TransitionHandler,
        heartbeat_interval: float = 5.0,
        down_after: float = 30.0,
        max_frame_bytes: int = codec.MAX_FRAME_BYTES,
        root_incarnation: Callable[[], int] = lambda: 0,
        on_duplicate: Callable[[str, int, int], None] | None = None,
        curve=None,
        on_refused: Callable[[str, str, str], None] | None = None,
    ):
        """``curve`` (``proto.curve.Server``): every child's key is checked at its
        handshake and each message's routing id must be its key's name; a message
        that is not is dropped, counted (``auth_refused``) and told to
        ``on_refused(peer, key name, why)`` at most once a minute per peer."""
        self.name = name
        self.curve = curve
        self._on_refused = on_refused
        #: messages dropped because the key does not speak for the routing id
        self.auth_refused = 0
        self._refused_told: dict[str, float] = {}
        self.incarnation = incarnation
        # ZMTP heartbeats are the children's (a child must notice a link its parent
        # stopped reading); pinging 500 children from here cost ~1 % of a core
        self.conn = transport.router(ctx, bind, max_bytes=max_frame_bytes, curve=curve)
        # ticks come every second at most: a gap of a heartbeat interval is our pause
        self.liveness = Liveness(heartbeat_interval, down_after, pause_after=max(2.0, heartbeat_interval))
        self._on_frame = on_frame
        self._on_transitions = on_transitions
        self._hb_interval = heartbeat_interval
        self._max_frame_bytes = max_frame_bytes
        self._root_incarnation = root_incarnation
        self._on_duplicate = on_duplicate
        self._down_after = down_after
        #: stored frames refused because a newer process of the same name is live
        self.duplicate_frames_refused = 0
        self._quiet = QuietLog(log)
        self._last_sent: dict[str, float] = {}
        #: child -> (when its held ACK entries go, the entries)
        self._held: dict[str, tuple[float, list[AckEntry]]] = {}
        self.decode_errors: Counter[str] = Counter()
        self.frames_in = 0
        self.bytes_in = 0
        self.send_failures = 0

    @property
    def port(self) -> int:
        return self.conn.port()

    def _reject(self, who: str, why: str) -> None:
        self.decode_errors[who] += 1
        self._quiet.warn(who, "dropped bad frame from %s: %s", who, why)

    def accept(self, parts: list[bytes]) -> None:
        """Check one message from a child and hand it on; never raises."""
        if len(parts) != 2:
            # counted under the same name as the sender's other bad frames
            self._reject(parts[0].decode("utf-8", "replace") if parts else "?", f"{len(parts)} message parts, expected 2")
            return
        ident, data = parts
        who = ident.decode("utf-8", "replace")
        self.frames_in += 1
        self.bytes_in += len(data)
        try:
            frame = codec.decode(data, self._max_frame_bytes)
        except codec.DecodeError as exc:
            self._reject(who, str(exc))
            return
        if frame.sender != who:
            self._reject(who, f"sender {frame.sender!r} does not match routing id")
            return
        known = self.liveness.children.get(who)
        if known is not None and frame.incarnation < known.incarnation and self._older_is_live(who, frame, known):
            return
        transitions = self.liveness.heard(who, frame.incarnation)
        child = self.liveness.children[who]
        if frame.kind is Kind.HELLO:
            child.role = frame.body.role
            child.ack_every = _ack_every(frame.body.inventory)
        child.prompt = frame.kind is Kind.HEARTBEAT
        if child.prompt and who in self._held:
            self._flush_acks(who)
        if transitions:
            self._greet(transitions)
            self._report(transitions)
        if frame.kind is Kind.HEARTBEAT:
            return
        try:
            self._on_frame(who, frame, data)
        except Exception:  # a handler bug must not kill the receive loop
            log.exception("handling %s from %s failed", frame.kind.name, who)

    def accept_signed(self, parts: list) -> None:
        """``accept`` for a CurveZMQ socket (``zmq.Frame`` parts): the key's name,
        bound at the handshake, must be the routing id."""
        who = parts[0].bytes.decode("utf-8", "replace") if parts else "?"
        user = self.curve.name_of(parts[-1]) if parts else None
        if user != who:
            why = (f"the key of {user!r} may not speak for {who!r}" if user
                   else f"the key {who!r} connected with is no longer accepted")
            self.refuse(who, user or "", why)
            return
        self.accept([p.bytes for p in parts])

    def refuse(self, who: str, key: str, why: str) -> None:
        """Count a message refused for its key and tell it (once a minute per peer)."""
        self.auth_refused += 1
        now = time.monotonic()
        if now - self._refused_told.get(who, -1e9) < 60.0:
            return
        self._refused_told[who] = now
        log.error("refused a message from %s: %s", who, why)
        if self._on_refused is not None:
            try:
                self._on_refused(who, key, why)
            except Exception:
                log.exception("reporting a refused message failed")

    def _older_is_live(self, who: str, frame: Frame, child) -> bool:
        """A frame of an older incarnation than ``who``'s newest: the replay of a
        killed predecessor's spool (stored frames, in a burst), or a second live
        process with the same name (a cloned host, a stray agent, an attacker).
        Only a live process sends HEARTBEATs and REPLYs: one of those from an older
        incarnation while the newest is live is reported (``duplicate_name``,
        once a minute). While the newest is live the older one's stored frames are
        refused (never acknowledged: its spool keeps them), so the two are never
        interleaved in one node's series. Returns whether to drop the frame."""
        now = time.monotonic()
        if now - child.newest_heard_mono >= self._down_after:
            return False  # the newest went quiet: the older one is the node now
        if not frame.stored:
            if now - child.duplicate_reported >= 60.0:
                child.duplicate_reported = now
                log.error("two live processes are named %s (incarnations %d and %d): the newer one's frames "
                          "are kept", who, frame.incarnation, child.incarnation)
                try:
                    if self._on_duplicate is not None:
                        self._on_duplicate(who, frame.incarnation, child.incarnation)
                except Exception:
                    log.exception("reporting a duplicate name failed")
            return False
        if now - child.duplicate_reported < 60.0 + self._down_after:
            self.duplicate_frames_refused += 1
            return True
        return False

    def _report(self, transitions: list[Transition]) -> None:
        try:
            self._on_transitions(transitions)
        except Exception:  # a handler bug must not kill the receive loop or the timer
            log.exception("handling transitions %s failed", transitions)

    def _greet(self, transitions: list[Transition]) -> None:
        """A child that appeared or restarted hears from us at once, so it replays."""
        for t in transitions:
            # new, restarted, or back from down: it may hold frames it could not send
            if t.old in (None, "down") or t.new == "restarted":
                self.send(t.subject, Heartbeat(self._root_incarnation()))

    async def receive(self) -> None:
        """Hand every message to ``accept`` until cancelled: a loop reader on the
        socket (``Conn.watch``), no future per message, in time slices so the
        other sockets of the loop (a read waiting) get their turn."""
        if self.curve is not None:
            self.conn.watch(self.accept_signed, copy=False)
        else:
            self.conn.watch(self.accept)
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self.conn.unwatch()

    def send(self, child: str, body: Body) -> bool:
        """Send a non-stored frame to a direct child."""
        data = codec.encode(make(self.name, self.incarnation, time.time(), body))
        return self.send_raw(child, data)

    def send_ack(self, child: str, ack: Ack) -> None:
        """Acknowledge stored frames to a direct child, at the pace it asked for.

        A child whose HELLO says ``ack_every`` (an agent: each ACK is a wake-up of
        an otherwise sleeping process) gets its ACK entries held and sent as one
        ACK that many seconds after the first, or with anything else sent to it
        (a heartbeat, at the latest after ``heartbeat_interval``), or at once
        while its last frame was a HEARTBEAT (it is idle or draining at stop).
        """
        c = self.liveness.children.get(child)
        if c is None or c.ack_every <= 0 or c.prompt:
            self.send(child, ack)
            return
        held = self._held.get(child)
        if held is None:
            self._held[child] = (time.monotonic() + c.ack_every, list(ack.entries))
        else:
            held[1].extend(ack.entries)

    def flush_acks(self, everything: bool = False) -> None:
        """Send the held ACKs that are due (all of them with ``everything``, at stop)."""
        if not self._held:
            return
        now = time.monotonic()
        for child in [c for c, (due, _) in self._held.items() if everything or now >= due]:
            self._flush_acks(child)

    def _flush_acks(self, child: str) -> None:
        _, entries = self._held.pop(child)
        by_run: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for e in entries:
            by_run.setdefault((e.node, e.incarnation), []).extend(e.ranges)
        self.send(child, Ack(tuple(AckEntry(node, inc, merge_ranges(ranges))
                                   for (node, inc), ranges in by_run.items())))

    def send_raw(self, child: str, data: bytes) -> bool:
        if child in self._held:  # what waits goes first, with what is sent anyway
            self._flush_acks(child)
        ok = self.conn.send([child.encode(), data])
        if ok:
            self._last_sent[child] = time.monotonic()
        else:
            self.send_failures += 1
        return ok

    def tick(self) -> list[Transition]:
        """Liveness transitions and heartbeats to every child still there."""
        if self.curve is not None:
            self.curve.ring.maybe_reload()  # a key removed is refused from now on
        transitions = self.liveness.tick()
        if transitions:
            self._report(transitions)
        self.flush_acks()
        now = time.monotonic()
        hb = None
        for name, child in self.liveness.children.items():
            if child.state == "down":
                continue
            if now - self._last_sent.get(name, 0.0) >= self._hb_interval:
                if hb is None:
                    hb = codec.encode(make(self.name, self.incarnation, time.time(), Heartbeat(self._root_incarnation())))
                self.send_raw(name, hb)
        return transitions

    def role_of(self, child: str) -> str | None:
        c = self.liveness.children.get(child)
        return c.role if c else None

    def close(self) -> None:
        self.flush_acks(everything=True)
        self.conn.close()


def _ack_every(inventory: object) -> float:
    """A child's ``ack_every`` from its HELLO inventory: seconds >= 0, else 0."""
    v = inventory.get("ack_every") if isinstance(inventory, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600:
        return float(v)
    return 0.0

