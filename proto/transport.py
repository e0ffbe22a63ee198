"""The one place where sockets are made.

Every ZeroMQ socket of every tier comes from here, so linger, high-water marks,
keepalive, ROUTER_HANDOVER and ROUTER_MANDATORY are set the same way everywhere.
The receive helpers await one message and then drain without blocking, which is
as fast as the blocking API (awaiting each message is ~5x slower).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import AsyncIterator, Callable

import zmq
import zmq.asyncio

#: Sockets per context; zmq's default of 1,023 stops a simulator at agent 1,024.
MAX_SOCKETS = 65536
DEFAULT_HWM = 100_000
LINGER_MS = 1000
DRAIN_YIELD_EVERY = 256
#: a watched socket's drain hands the loop back after this long, so a busy link
#: (the root's children) does not keep a read waiting behind a long backlog
DRAIN_SLICE_S = 0.002
_POLLIN = int(zmq.POLLIN)

_ENDPOINT = re.compile(r"^(tcp://(\*|[A-Za-z0-9_.\-]+|\[[0-9a-fA-F:.]+\]):\d{1,5}|ipc://.+|inproc://.+)$")


def valid_endpoint(endpoint: str) -> bool:
    """True for tcp://host:port, ipc://path and inproc://name."""
    if not isinstance(endpoint, str) or not _ENDPOINT.match(endpoint):
        return False
    if endpoint.startswith("tcp://"):
        return 0 < int(endpoint.rsplit(":", 1)[1]) < 65536
    return True


def make_context(max_sockets: int = MAX_SOCKETS) -> zmq.asyncio.Context:
    """The process's one asyncio context, sized for many sockets."""
    ctx = zmq.asyncio.Context()
    ctx.set(zmq.MAX_SOCKETS, max_sockets)
    return ctx


#: no message on a tree link is larger than a frame may be (the codec's own limit)
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


def _common(sock: zmq.Socket, hwm: int, max_bytes: int, heartbeat: float | None) -> None:
    # A peer that sends a larger message is disconnected by ZeroMQ before the
    # message is ever buffered whole: memory is bounded before any check of ours.
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    if heartbeat:
        # ZMTP heartbeats: a connection whose other end stopped reading it (a ROUTER
        # that handed our routing id to another peer) is dropped and made anew
        ivl = max(100, int(heartbeat * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 6 * ivl)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)


class Conn:
    """An asyncio socket plus a blocking shadow of the same handle.

    Awaiting is used only to wait for the first message; draining and sending use
    the shadow with NOBLOCK, which raises ``zmq.Again`` directly instead of
    creating a future per call. ``watch`` goes further for a socket that sees one
    message now and then (an agent's uplink): a loop reader on the socket's FD
    and a callback per message, no future and no exception at all.
    """

    __slots__ = ("aio", "raw", "_loop", "_on_message", "_copy")

    def __init__(self, aio: zmq.asyncio.Socket):
        self.aio = aio
        self.raw = zmq.Socket.shadow(aio.underlying)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_message: Callable[[list[bytes]], None] | None = None
        self._copy = True

    async def messages(self) -> AsyncIterator[list[bytes]]:
        """Yield multipart messages forever: await one, then drain what is queued."""
        raw = self.raw
        while True:
            yield await self.aio.recv_multipart()
            n = 0
            while True:
                try:
                    msg = raw.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                yield msg
                n += 1
                if n % DRAIN_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a draining loop must let timers run

    def watch(self, on_message: Callable[[list], None], copy: bool = True) -> None:
        """Call ``on_message`` on the loop for every message, until ``close``.

        The FD of a ZeroMQ socket is edge-triggered: each wake-up drains until
        ``EVENTS`` shows nothing waiting, in slices of at most ``DRAIN_SLICE_S``
        (or ``DRAIN_YIELD_EVERY`` messages) so timers and other sockets get their
        turn, and ``send`` schedules a drain when it finds a message waiting.
        ``copy=False`` hands ``zmq.Frame`` objects (their metadata: Peer-Address).
        """
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._copy = copy
        # replaces pyzmq's own reader for this FD, which serves only awaited recvs
        self._loop.add_reader(self.raw.FD, self._drain)
        self._loop.call_soon(self._drain)  # messages that came before the reader

    def _drain(self) -> None:
        raw, on_message, copy = self.raw, self._on_message, self._copy
        if on_message is None:
            return
        until = time.monotonic() + DRAIN_SLICE_S
        for _ in range(DRAIN_YIELD_EVERY):
            if raw.closed or not raw.getsockopt(zmq.EVENTS) & _POLLIN:
                return
            on_message(raw.recv_multipart(zmq.NOBLOCK, copy=copy))
            if time.monotonic() >= until:
                break
        self._loop.call_soon(self._drain)

    def send(self, parts: list[bytes]) -> bool:
        """Send without blocking; False when the peer is unroutable or the queue is full."""
        raw = self.raw
        try:
            if len(parts) == 1:
                raw.send(parts[0], zmq.NOBLOCK)
            else:
                raw.send_multipart(parts, zmq.NOBLOCK)
            ok = True
        except zmq.ZMQError:
            ok = False
        # The socket's FD is edge-triggered and a send processes pending commands,
        # which can swallow the edge announcing an incoming message. When one waits,
        # asking the asyncio socket for EVENTS makes pyzmq schedule a look (that path
        # costs a few enum operations, so only then). A watched socket drains itself.
        if not raw.closed and raw.get(zmq.EVENTS) & _POLLIN:
            if self._on_message is not None:
                self._loop.call_soon(self._drain)
            else:
                self.aio.get(zmq.EVENTS)
        return ok

    def port(self) -> int:
        """The TCP port the socket is bound to (after binding port 0)."""
        return int(self.raw.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])

    def unwatch(self) -> None:
        """Stop calling the ``watch`` callback (messages stay queued)."""
        if self._on_message is not None:
            self._on_message = None
            if not self._loop.is_closed():
                self._loop.remove_reader(self.raw.FD)

    def close(self) -> None:
        self.unwatch()
        self.aio.close()


def router(ctx: zmq.asyncio.Context, bind: str, hwm: int = DEFAULT_HWM, max_bytes: int = DEFAULT_MAX_BYTES,
           heartbeat: float | None = None, curve=None) -> Conn:
    """A parent's socket for its children (or the root's query socket).

    ROUTER_HANDOVER lets a rebooted child take over its routing id;
    ROUTER_MANDATORY makes a send to a vanished child fail instead of vanishing.
    ``curve`` (a ``proto.curve.Server``): CurveZMQ, every peer's key checked by
    the process's ZAP handler at its handshake.
    """
    sock = ctx.socket(zmq.ROUTER)
    _common(sock, hwm, max_bytes, heartbeat)
    if curve is not None:
        curve.secure(sock)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.bind(bind)
    return Conn(sock)


def dealer(ctx: zmq.asyncio.Context, identity: str, connect: str | None = None, hwm: int = DEFAULT_HWM,
           max_bytes: int = DEFAULT_MAX_BYTES, heartbeat: float | None = None, curve=None) -> Conn:
    """A child's socket to its parent; its routing id is the child's name.
    ``curve`` (a ``proto.curve.ClientKeys``): CurveZMQ with the parent's key."""
    sock = ctx.socket(zmq.DEALER)
    _common(sock, hwm, max_bytes, heartbeat)
    if curve is not None:
        curve.secure(sock)
    sock.setsockopt(zmq.IDENTITY, identity.encode())
    # Each child waits its own random interval before reconnecting, so a restarted
    # parent is not hit by every child in the same millisecond.
    sock.setsockopt(zmq.RECONNECT_IVL, random.randint(100, 1000))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
    # Queue nothing for a parent that is not connected: unacknowledged frames are
    # replayed from the spool, so a queued copy would only arrive late and twice.
    sock.setsockopt(zmq.IMMEDIATE, 1)
    if connect:
        sock.connect(connect)
    return Conn(sock)
