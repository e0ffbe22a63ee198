"""The one client of the root's query socket (used by the CLI, tests and benches)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack
import zmq

DEFAULT_ENDPOINT = "tcp://localhost:7401"


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

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0, ctx: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
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
                raise ClientError("timeout", f"no reply from {self.endpoint} within {timeout:g} s: is clumon-root "
                                             "running there? (check --endpoint or CLUMON_ENDPOINT)")
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
