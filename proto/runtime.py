"""Process plumbing shared by the daemons: event loop, signals, readiness, logging.

Nothing here runs at import time; each daemon's ``main()`` calls ``run``.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Awaitable, Callable, Iterable

log = logging.getLogger("clumon")

READY_PREFIX = "CLUMON-READY "


def setup_logging(level: str = "INFO") -> None:
    """One line per record on stderr, with the daemon's time and level."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def sd_notify(state: bytes) -> bool:
    """Send a state (``READY=1``, ``STOPPING=1``) to systemd, if it is listening."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state)
        return True
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state.decode(), exc)
        return False


def notify_ready(daemon: str, info: dict[str, Any]) -> None:
    """Tell systemd (Type=notify) and the log that the daemon serves.

    The log line is ``CLUMON-READY {json}`` on stdout so tests and ``clumon demo``
    can wait for it instead of sleeping.
    """
    sd_notify(b"READY=1")
    print(READY_PREFIX + json.dumps({"daemon": daemon, "pid": os.getpid(), **info}), flush=True)


def notify_stopping() -> None:
    sd_notify(b"STOPPING=1")


#: a young collection runs when this many more container objects are alive than at
#: the last one (CPython's default is 700); older generations as rarely
GC_THRESHOLDS = (50_000, 20, 100)


def quiet_gc() -> None:
    """Collect garbage rarely, and never walk what start-up made (parent tiers).

    With CPython's default thresholds the frames waiting for their commit at the
    root survive two young collections, so a full collection came every ~15 s and
    walked everything (imports, nodes, dictionaries): 50-60 ms with the loop
    stopped at the root and 10-20 ms at an aggregator, which is a read's p99.
    ``freeze`` takes what exists now out of every collection; the larger first
    threshold runs a collection only when the live set grew by that many objects,
    not whenever short-lived ones come and go. Reference counting frees acyclic
    garbage as before; cycles wait for the next collection of their generation.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class PortInUse(RuntimeError):
    """A port this daemon must bind is taken; the message is one line for ``main()``."""


def _port_of(endpoint: str) -> str:
    return endpoint.rpartition(":")[2]


def check_ports(endpoints: Iterable[str], http: str = "") -> None:
    """Bind each ZeroMQ endpoint (and ``http``, a host:port) once and let go, before
    a daemon touches its state: a second daemon on the same ports says so at once,
    without opening the first one's database or markers. Raises ``PortInUse``.

    The daemon binds for real right after; a process that takes a port in between
    still makes that bind fail, only later.
    """
    import zmq

    ctx = zmq.Context(1)
    try:
        for endpoint in endpoints:
            if not endpoint.startswith("tcp://") or _port_of(endpoint) in ("0", "*"):
                continue
            sock = ctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EADDRINUSE:
                    raise PortInUse(f"port {_port_of(endpoint)} in use ({endpoint})") from None
                raise PortInUse(f"cannot bind {endpoint}: {exc.strerror}") from None
            finally:
                sock.close()
    finally:
        ctx.term()
    if http:
        host, _, port = http.rpartition(":")
        if port == "0":
            return
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            try:
                probe.bind((host.strip("[]"), int(port)))
            except OSError as exc:
                raise PortInUse(f"port {port} in use ({http})" if exc.errno == errno.EADDRINUSE
                                else f"cannot bind {http}: {exc.strerror}") from None


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(serve: Callable[[asyncio.Event], Awaitable[None]], log_level: str = "INFO") -> int:
    """Run ``serve(stop)`` under uvloop until SIGTERM/SIGINT sets ``stop``.

    ``serve`` returns after it has drained; the process then exits 0.
    """
    setup_logging(log_level)
    install_uvloop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    asyncio.run(main())
    return 0


class QuietLog:
    """Warn once per key per ``every`` seconds, then count silently.

    Used for bad frames: one noisy sender must not flood the log.
    """

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, msg: str, *args: Any) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        suffix = f" ({n} more suppressed)" if n else ""
        self._log.warning(msg + suffix, *args)
        if len(self._last) > 10000:  # bounded: forget the oldest keys
            for k in sorted(self._last, key=self._last.__getitem__)[:5000]:
                del self._last[k]


def percentile(values, q: float, empty: float | None = 0.0) -> float | None:
    """The q-th percentile (0..100) by nearest rank; ``values`` need not be sorted
    (``empty`` when there are none)."""
    if not values:
        return empty
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
