"""CurveZMQ for every link: key files, the ``[curve]`` section, the ZAP handler.

Keys are the files pyzmq's ``zmq.auth.create_certificates`` writes: ``NAME.key``
(the public key) and ``NAME.key_secret`` (both keys). A daemon's ``[curve]``
names its own secret key file, its parent's public key file and a directory of
the public keys it accepts (``authorized_keys``). The name a key speaks for is
its file's name: ``node-1.key`` is node-1's; during a rotation a second file
``node-1.key.TAG`` (``node-1.key.new``) beside it is node-1's too, so the old
and the new key both work until the old file is removed.

The directory is read again when it changes (looked at once a second, and at a
handshake with a key it does not hold): a key added is accepted at its next
handshake, a key removed is
refused at its next handshake, and the messages of a connection made with a
removed key are dropped from then on (``Keyring.name_of`` says None).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("clumon.curve")

_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ZAP_DOMAIN = "clumon"


class KeyFileError(ValueError):
    """A key file that cannot be used (said in one line)."""


@dataclass(frozen=True, slots=True)
class CurveConfig:
    """``[curve]`` of every daemon's TOML (and the client's key files)."""

    #: this daemon's secret key file (``NAME.key_secret``)
    secret_key: str = ""
    #: the parent's public key file (``PARENT.key``), or one per parent in the order
    #: of ``parents`` (a child that fails over to a parent with a key of its own)
    parent_key: str | tuple[str, ...] = ""
    #: directory of the public keys accepted from children or clients
    authorized_keys: str = ""

    @property
    def on(self) -> bool:
        return bool(self.secret_key)

    def parent_keys(self, parents: int) -> tuple[str, ...]:
        keys = (self.parent_key,) if isinstance(self.parent_key, str) else tuple(self.parent_key)
        return keys * parents if len(keys) == 1 else keys

    def problem(self, parents: int, serves: bool) -> str | None:
        """None, or what is wrong (one line) with these keys for a daemon with
        ``parents`` parents that ``serves`` children or clients."""
        if not any((self.secret_key, self.parent_key, self.authorized_keys)):
            return None
        if not self.secret_key:
            return "[curve]: secret_key is required when parent_key or authorized_keys is given"
        try:
            load_secret(self.secret_key)
            if parents:
                keys = self.parent_keys(parents)
                if not all(keys):
                    return "[curve]: parent_key (the parent's public key file) is required with secret_key"
                if len(keys) != parents:
                    return (f"[curve]: parent_key: expected one file, or one per parent ({parents}), "
                            f"got {len(keys)}")
                for k in keys:
                    load_public(k)
        except KeyFileError as exc:
            return f"[curve]: {exc}"
        if serves:
            if not self.authorized_keys:
                return "[curve]: authorized_keys (a directory of public keys) is required with secret_key"
            if not Path(self.authorized_keys).is_dir():
                return f"[curve]: authorized_keys {self.authorized_keys!r} is not a directory"
        return None


def generate(name: str, directory: str | Path) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` in ``directory`` (the secret one
    readable by its owner only); refuses to overwrite."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pub, sec = d / f"{name}{PUBLIC_SUFFIX}", d / f"{name}{SECRET_SUFFIX}"
    for p in (pub, sec):
        if p.exists():
            raise KeyFileError(f"{p} exists: remove it first (or choose another name)")
    old = os.umask(0o077)
    try:
        made_pub, made_sec = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old)
    os.chmod(made_pub, 0o644)
    os.chmod(made_sec, 0o600)
    return Path(made_pub), Path(made_sec)


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # pyzmq says ValueError / KeyError for a file without keys
        raise KeyFileError(f"{path} is not a key file of `clumon keys gen` ({type(exc).__name__}: {exc})") from None


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    public, secret = _load(path)
    if not secret:
        raise KeyFileError(f"{path} holds no secret key (the secret key is NAME.key_secret, not NAME.key)")
    return public, secret


def load_public(path: str | Path) -> bytes:
    return _load(path)[0]


def name_of_file(path: Path) -> str | None:
    """``node-1.key`` and ``node-1.key.new`` -> ``node-1``; anything else None."""
    name = path.name
    if name.endswith("_secret") or name.startswith("."):
        return None
    if name.endswith(PUBLIC_SUFFIX):
        return name[: -len(PUBLIC_SUFFIX)] or None
    stem, sep, _tag = name.rpartition(PUBLIC_SUFFIX + ".")
    return stem if sep and stem else None


class Keyring:
    """The accepted public keys of one directory, by z85 text -> name."""

    def __init__(self, directory: str | Path, clock: Callable[[], float] = time.monotonic):
        self.directory = Path(directory)
        self._clock = clock
        self.keys: dict[bytes, str] = {}
        self._stamp: tuple | None = None
        self._checked = self._forced = 0.0
        self.refused = 0
        #: z85 key -> times refused, for the daemon's report
        self.refused_keys: dict[bytes, int] = {}
        self.reload()

    def _signature(self) -> tuple:
        try:
            entries = sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(self.directory))
        except OSError:
            return ()
        return tuple(entries)

    def reload(self) -> None:
        stamp = self._signature()
        if stamp == self._stamp:
            return
        keys: dict[bytes, str] = {}
        for p in sorted(self.directory.iterdir()) if self.directory.is_dir() else ():
            name = name_of_file(p)
            if name is None or not p.is_file():
                continue
            try:
                keys[load_public(p)] = name  # z85 text, as the ZAP handler hands keys over
            except KeyFileError as exc:
                log.warning("authorized_keys: %s (skipped)", exc)
        if self._stamp is not None:
            log.info("authorized_keys %s read again: %d keys", self.directory, len(keys))
        self.keys, self._stamp = keys, stamp

    def maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked >= 1.0:
            self._checked = now
            self.reload()

    def name_of(self, z85_key: bytes) -> str | None:
        return self.keys.get(z85_key)

    # the ZAP callback (pyzmq's credentials provider)
    def callback(self, domain: str, z85_key: bytes) -> bool:
        self.maybe_reload()
        if z85_key in self.keys:
            return True
        now = self._clock()
        if now - self._forced >= 0.1:  # a key just added is taken at once (a scanner: ten looks a second)
            self._forced = self._checked = now
            self.reload()
            if z85_key in self.keys:
                return True
        self.refused += 1
        self.refused_keys[z85_key] = self.refused_keys.get(z85_key, 0) + 1
        return False


class Server:
    """A daemon's server side: its keys, the accepted keys and the ZAP handler of
    its context (one per process: every bound socket of it uses this)."""

    def __init__(self, ctx: zmq.asyncio.Context, cfg: CurveConfig):
        #: handshakes that failed on the sockets watched (``monitor``): no keys,
        #: another mechanism, a key not accepted
        self.handshake_failures = 0
        self._monitors: list[tuple[zmq.asyncio.Socket, asyncio.Task]] = []
        self.public, self.secret = load_secret(cfg.secret_key)
        self.ring = Keyring(cfg.authorized_keys)
        # the User-Id of a connection is its key (z85, pyzmq's default): each
        # message's key is looked up in the ring, so a key removed stops at once
        self._auth = AsyncioAuthenticator(ctx, log=logging.getLogger("clumon.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.ring)

    def secure(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before bind) a CURVE server that asks the ZAP handler,
        and count its failed handshakes."""
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        if isinstance(sock, zmq.asyncio.Socket):
            mon = sock.get_monitor_socket(_FAILED)
            self._monitors.append((sock, asyncio.ensure_future(self._count(mon))))

    async def _count(self, mon: zmq.asyncio.Socket) -> None:
        while True:
            parse_monitor_message(await mon.recv_multipart())
            self.handshake_failures += 1

    def name_of(self, frame: zmq.Frame) -> str | None:
        """The name of the key a message came with (None: not an accepted key now)."""
        try:
            key = frame.get("User-Id")
        except zmq.ZMQError:
            return None
        return self.ring.keys.get(key.encode()) if key else None

    def stop(self) -> None:
        for sock, task in self._monitors:
            task.cancel()
            if not sock.closed:
                sock.disable_monitor()
        self._monitors.clear()
        self._auth.stop()


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """A child's or client's side: its keys and the server's public key."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, secret_key: str | Path, server_key: str | Path) -> "ClientKeys":
        public, secret = load_secret(secret_key)
        return cls(public, secret, load_public(server_key))

    def secure(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
