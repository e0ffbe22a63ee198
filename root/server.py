"""The root's query socket: a ROUTER that answers every request before its deadline.

Requests are msgpack maps ``{op, args}``; replies are ``{ok: true, result}`` or
``{ok: false, error: {code, message}}``. Clients may use REQ (an empty delimiter
frame) or DEALER; the reply goes back in the same envelope. Each op is run
through the op table with the caller's role: until keys and roles are configured,
a loopback caller is ``admin`` and any other ``reader``, so ops that change
anything are accepted only from loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import msgpack
import zmq

from clumon.proto import codec
from clumon.proto.transport import Conn
from clumon.root.ops import ADMIN, READER, OpTable, QueryError

log = logging.getLogger("clumon.root.server")

MAX_REQUEST_BYTES = 1024 * 1024
#: replies queued per client: one that never reads its replies has the extra ones
#: dropped (ROUTER drops on a full queue), so it cannot grow the root's memory
QUERY_HWM = 1000


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def caller_role(peer: str | None) -> str:
    """The role of a caller by its address, until keys and roles are configured:
    loopback (and ipc/inproc, local by construction) is ``admin``, any other ``reader``."""
    if not peer:
        return ADMIN
    try:
        return ADMIN if ipaddress.ip_address(peer).is_loopback else READER
    except ValueError:
        return READER


class QueryServer:
    """Receives requests, runs each as a task, replies with a fixed shape."""

    def __init__(self, conn: Conn, ops: OpTable, timeout: float, caller=None):
        """``caller(frame)``: who sent a request (a ``roles.Principal``), on a
        CurveZMQ socket; without it the caller is a role by peer address."""
        self.conn = conn
        self._caller = caller
        self.ops = ops
        self.timeout = timeout
        self.requests = 0
        self.errors = 0
        self._tasks: set[asyncio.Task] = set()

    async def serve(self) -> None:
        """Answer requests until cancelled. The socket is read by a loop reader
        (``Conn.watch``): a request costs no future before its task starts."""
        self.conn.watch(self._received, copy=False)
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self.conn.unwatch()

    def _received(self, parts: list[zmq.Frame]) -> None:
        if self._caller is not None:
            caller = self._caller(parts[-1])
        else:
            try:
                caller = caller_role(parts[-1].get("Peer-Address"))
            except (zmq.ZMQError, AttributeError):
                caller = caller_role(None)
        envelope = [p.bytes for p in parts[:-1]]
        task = asyncio.create_task(self._answer(envelope, parts[-1].bytes, caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, envelope: list[bytes], payload: bytes, caller) -> None:
        self.requests += 1
        reply = await self._reply(payload, caller)
        if not reply.get("ok"):
            self.errors += 1
        try:
            data = msgpack.packb(reply, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            data = msgpack.packb(error("internal", f"reply not serialisable: {exc}"), use_bin_type=True)
        self.conn.send(envelope + [data])

    async def _reply(self, payload: bytes, caller) -> dict:
        try:
            req = codec.unpack(payload, MAX_REQUEST_BYTES)
        except codec.DecodeError as exc:
            return error("bad_request", str(exc))
        if not isinstance(req, dict):
            return error("bad_request", "request must be a map {op, args}")
        reply = await self._run(req, caller)
        if "id" in req:
            reply["id"] = req["id"]
        return reply

    async def _run(self, req: dict, caller) -> dict:
        op, args = req.get("op"), req.get("args", {})
        timeout = req.get("timeout", self.timeout)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
            return error("bad_args", f"timeout: expected seconds in (0, 3600], got {timeout!r}")
        try:
            async with asyncio.timeout(timeout):  # in this task: no task of its own, unlike wait_for
                result = await self.ops.call(op, args, caller)
        except QueryError as exc:
            return error(exc.code, exc.message)
        except TimeoutError:
            return error("timeout", f"op {op!r} did not finish within {timeout}s")
        except Exception as exc:  # an op's bug is an error value, not silence
            log.exception("op %r failed", op)
            return error("internal", f"{type(exc).__name__}: {exc}")
        return {"ok": True, "result": result}

