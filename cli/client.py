"""The one client of the root's query socket (used by the CLI, tests and benches)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

DEFAULT_ENDPOINT = "tcp://localhost:7401"
#: where a user's key and the root's public key are looked for last
KEY_DIR = Path("~/.config/clumon")


class ClientError(Exception):
    """An error reply (``code``, ``message``) or no reply before the deadline."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Client:
    """Blocking request/reply over a DEALER; one outstanding request at a time.

    A DEALER (not REQ) so that a timed-out request does not wedge the socket: late
    replies are recognised by their id and discarded.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0, ctx: zmq.Context | None = None,
                 key: str | None = None, server_key: str | None = None):
        """``key``: this client's secret key file (``NAME.key_secret``) and
        ``server_key`` the root's public key file, for a root with CurveZMQ on;
        both are looked for as ``find_keys`` says."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.keys = find_keys(key, server_key)
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            self.keys.secure(self._sock)
        self._sock.connect(endpoint)
        self._ids = itertools.count(1)

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """Send ``op`` with ``args``; return its result or raise ``ClientError``."""
        timeout = self.timeout if timeout is None else timeout
        rid = next(self._ids)
        args = {k: v for k, v in args.items() if v is not None}
        # the root's own deadline comes first, so a slow op still gets its error reply
        server_timeout = max(timeout * 0.9, timeout - 1.0)
        self._sock.send_multipart([b"", msgpack.packb({"id": rid, "op": op, "args": args,
                                                        "timeout": server_timeout}, use_bin_type=True)])
        deadline = time.monotonic() + timeout
        while True:
            if not self._sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                hint = ("is clumon-root running there, and does it accept this key?" if self.keys is not None
                        else "is clumon-root running there? If it has keys on, give yours with --key or CLUMON_KEY")
                raise ClientError("timeout", f"no reply from {self.endpoint} within {timeout:g} s: {hint} "
                                             "(check --endpoint or CLUMON_ENDPOINT)")
            parts = self._sock.recv_multipart()
            reply = msgpack.unpackb(parts[-1], raw=False)
            if isinstance(reply, dict) and reply.get("id", rid) != rid:
                continue
            break
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ClientError("bad_reply", f"unexpected reply {reply!r:.200}")
        if not reply["ok"]:
            err = reply.get("error") or {}
            raise ClientError(str(err.get("code", "error")), str(err.get("message", "")))
        return reply.get("result")

    def close(self) -> None:
        self._sock.close(0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def find_keys(key: str | None = None, server_key: str | None = None):
    """This client's CurveZMQ keys, or None (no key anywhere: the link is open).

    The secret key: ``key``, else ``$CLUMON_KEY``, else the one ``*.key_secret``
    in ``~/.config/clumon/``. The root's public key: ``server_key``, else
    ``$CLUMON_SERVER_KEY``, else ``root.key`` beside the secret key, else
    ``~/.config/clumon/root.key``. Raises ``ClientError`` for a key that cannot
    be used."""
    from clumon.proto.curve import ClientKeys, KeyFileError

    key = key or os.environ.get("CLUMON_KEY") or None
    home = KEY_DIR.expanduser()
    if key is None and home.is_dir():
        found = sorted(home.glob("*.key_secret"))
        if len(found) == 1:
            key = str(found[0])
        elif len(found) > 1:
            raise ClientError("keys", f"{home} holds {len(found)} secret keys: choose one with --key or CLUMON_KEY")
    if key is None:
        return None
    server_key = server_key or os.environ.get("CLUMON_SERVER_KEY") or None
    if server_key is None:
        for candidate in (Path(key).parent / "root.key", home / "root.key"):
            if candidate.is_file():
                server_key = str(candidate)
                break
        else:
            raise ClientError("keys", f"the root's public key is needed with {key}: give --server-key, "
                                      "CLUMON_SERVER_KEY, or put root.key beside your key")
    try:
        return ClientKeys.load(key, server_key)
    except KeyFileError as exc:
        raise ClientError("keys", str(exc)) from None
