"""The root's HTTP server (aiohttp): pages under ``/``, ``/api/v1/<op>``, ``/metrics``.

aiohttp rather than the hand-written server of before: the API and the pages
need keep-alive, query strings, forms, cookies, compression, static files with
their caching headers and limits on what a request may send, all of which a
well-kept asyncio library gets right (and is fuzzed and patched upstream) where
hand-parsed HTTP would not. It runs on the root's own loop, beside the ZeroMQ
sockets, so an op answered here is the same coroutine the query socket runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiohttp import web

from clumon.root import http
from clumon.root.httpauth import HttpAuth
from clumon.root.ops import OpTable, QueryError
from clumon.root.web import api, auth, pages

log = logging.getLogger("clumon.root.web")

#: a request body (POST to the API, the login form) larger than this is refused
MAX_BODY = 256 * 1024
#: answers larger than this are gzipped for a client that accepts it
COMPRESS_FROM = 4096


#: what a page may load and who may frame it: this origin only, nobody
POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
          "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


async def _guard(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every answer carries: the content policy, no sniffing, no framing."""
    response.headers.setdefault("Content-Security-Policy", POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


@web.middleware
async def _api_errors(request: web.Request, handler):
    """An API path aiohttp itself refuses (no such route, wrong method) answers
    in the API's shape, one line, like every other API error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        code = "method" if exc.status == 405 else "not_found"
        return web.json_response({"ok": False, "error": {"code": code, "message": f"{exc.reason}: {request.path}"}},
                                 status=exc.status)


class WebServer:
    """Serves the dashboard, its API and ``/metrics`` on one host:port."""

    def __init__(self, host: str, port: int, ops: OpTable, take_metrics: Callable, auth_: HttpAuth,
                 caller: Callable[[str, str | None], object], timeout: float):
        """``caller(name, peer)``: the ``roles.Principal`` of a token's name ("" without
        tokens) from a peer address; ``take_metrics()``: what ``/metrics`` renders."""
        self.host, self.port = host, port
        self.ops = ops
        self.auth = auth_
        self.timeout = timeout
        self._take = take_metrics
        self.scrapes = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=MAX_BODY,
                                   middlewares=[auth.middleware(auth_, caller), _api_errors])
        self.app.on_response_prepare.append(_guard)
        self.app.add_routes([
            web.get("/metrics", self.metrics),
            web.get("/api/v1/{op}", self.call),
            web.post("/api/v1/{op}", self.call),
            web.get("/api/v1/", self.index),
            *auth.routes(auth_),
            *pages.routes(ops, auth_.required),
            web.static("/static", pages.STATIC, append_version=False),
        ])

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def metrics(self, request: web.Request) -> web.Response:
        nodes, health, alerts = self._take()
        body = await asyncio.get_running_loop().run_in_executor(None, http.render, nodes, health, alerts)
        self.scrapes += 1
        return web.Response(body=body.encode(), headers={"Content-Type": http.CONTENT_TYPE})

    async def index(self, request: web.Request) -> web.Response:
        """The ops this API serves (all of the op table)."""
        return self._json(request, 200, {"ok": True, "result": {"ops": self.ops.names()}})

    async def call(self, request: web.Request) -> web.Response:
        """One op: GET with query arguments (reads), or POST with a JSON map of them."""
        self.requests += 1
        name = request.match_info["op"]
        try:
            if name not in self.ops:
                raise QueryError("unknown_op", f"unknown op {name!r}; see /api/v1/ for the list")
            if request.method == "POST":
                args = await self._body(request)
            else:
                if self.ops[name].mutating:
                    raise QueryError("method", f"op {name!r} changes things: POST its arguments as JSON")
                args = api.args_from_query(name, request.query)
            api.bound(name, args)
            async with asyncio.timeout(self.timeout):
                result = await self.ops.call(name, args, request[auth.PRINCIPAL])
        except QueryError as exc:
            status, body = api.error(exc.code, exc.message)
            if exc.code == "forbidden":
                body["error"]["role"] = request[auth.PRINCIPAL].role
            return self._json(request, status, body)
        except TimeoutError:
            return self._json(request, *api.error("timeout", f"op {name!r} did not finish in {self.timeout}s"))
        except Exception as exc:  # an op's bug is an error value, as on the query socket
            log.exception("op %r failed over HTTP", name)
            return self._json(request, *api.error("internal", f"{type(exc).__name__}: {exc}"))
        return self._json(request, 200, {"ok": True, "result": result})

    async def _body(self, request: web.Request) -> dict:
        if request.content_type != "application/json":
            raise QueryError("bad_args", "POST a JSON map of arguments (Content-Type: application/json)")
        try:
            args = await request.json()
        except ValueError as exc:
            raise QueryError("bad_args", f"body is not JSON: {exc}") from None
        if not isinstance(args, dict):
            raise QueryError("bad_args", "body must be a JSON map of arguments")
        return args

    def _json(self, request: web.Request, status: int, body: dict) -> web.Response:
        data = api.dumps(body)
        answer = web.Response(body=data, status=status, content_type="application/json",
                              headers={"Cache-Control": "no-store"})
        if len(data) >= COMPRESS_FROM and "gzip" in request.headers.get("Accept-Encoding", ""):
            answer.enable_compression(web.ContentCoding.gzip)
        return answer
