"""``/metrics``: the latest value of every series of every live node, for Prometheus.

The loop only takes a snapshot (node list and copies of the value arrays); the
text is rendered in an executor, so a scrape of a 5,000-node site never stalls
ingest. Series keep their Clumon+ names; ``node`` and ``aggregator`` labels are
added. Nodes that are forgotten, or not heard from for ``stale_after`` seconds,
drop out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from clumon.proto.tree import LatestCache
from clumon.root.httpauth import HttpAuth
from clumon.root.registry import Registry

log = logging.getLogger("clumon.root.http")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    name: str
    aggregator: str
    up: bool
    names: tuple[str, ...]
    values: np.ndarray | None


def snapshot(registry: Registry, cache: LatestCache, stale_after: float) -> list[NodeSnapshot]:
    """What a scrape needs, copied on the loop (cheap: one array copy per node)."""
    now = time.time()
    out = []
    for n in registry.nodes.values():
        if now - n.last_seen > stale_after:
            continue
        nv = cache.nodes.get(n.name)
        live = n.state in ("up", "suspect", "restarted")
        out.append(NodeSnapshot(n.name, n.parent, n.state == "up" or n.state == "restarted",
                                nv.names if (nv is not None and live) else (),
                                nv.values.copy() if (nv is not None and live) else None))
    return out


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _split(series: str) -> tuple[str, str]:
    """'name{a="b"}' -> ('name', 'a="b"')."""
    brace = series.find("{")
    if brace < 0:
        return series, ""
    return series[:brace], series[brace + 1:-1]


def _fmt(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    return repr(float(v))


def render(nodes: list[NodeSnapshot], health: dict, alerts: list[str] = ()) -> str:
    """The Prometheus text exposition (format 0.0.4); ``alerts`` are ready
    ``ALERTS{...} 1`` lines (the alert engine's)."""
    families: dict[str, list[str]] = {}
    for node in nodes:
        base = f'node="{_escape(node.name)}",aggregator="{_escape(node.aggregator)}"'
        families.setdefault("clumon_node_up", []).append(f"clumon_node_up{{{base}}} {1 if node.up else 0}")
        if node.values is None:
            continue
        for series, v in zip(node.names, node.values.tolist()):
            if math.isnan(v):
                continue
            name, labels = _split(series)
            families.setdefault(name, []).append(
                f"{name}{{{base}{',' + labels if labels else ''}}} {_fmt(v)}")
    lines = []
    for name in sorted(families):
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(families[name])
    for key, v in sorted(health.items()):
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, (int, float)):
            continue
        lines.append(f"# TYPE clumon_root_{key} gauge")
        lines.append(f"clumon_root_{key} {_fmt(v)}")
    if alerts:
        lines.append("# TYPE ALERTS gauge")
        lines.extend(alerts)
    return "\n".join(lines) + "\n"


class MetricsServer:
    """A minimal HTTP/1.1 server: ``GET /metrics``, anything else 404; with a
    tokens file, a request without a valid bearer token is answered 401."""

    def __init__(self, host: str, port: int, take: Callable[[], tuple[list[NodeSnapshot], dict, list[str]]],
                 auth: HttpAuth | None = None):
        self.host, self.port = host, port
        self._take = take
        self.auth = auth or HttpAuth(None)
        self._server: asyncio.AbstractServer | None = None
        self.scrapes = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            first, *headers = request.decode("latin-1").split("\r\n")
            method, path, *_ = first.split(" ")
            authorization = next((h.split(":", 1)[1].strip() for h in headers
                                  if h.lower().startswith("authorization:")), None)
            if self.auth.who(authorization) is None:
                await self._respond(writer, 401, "text/plain", b"a valid bearer token is needed here\n",
                                    extra="WWW-Authenticate: Bearer realm=\"clumon\"\r\n")
                return
            if method not in ("GET", "HEAD") or path.split("?", 1)[0] != "/metrics":
                await self._respond(writer, 404, "text/plain", b"only GET /metrics here\n")
                return
            nodes, health, alerts = self._take()
            body = await asyncio.get_running_loop().run_in_executor(None, render, nodes, health, alerts)
            self.scrapes += 1
            await self._respond(writer, 200, CONTENT_TYPE, body.encode() if method == "GET" else b"")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes,
                       extra: str = "") -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
