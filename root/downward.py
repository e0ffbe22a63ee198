"""Everything the root sends down the tree on a client's behalf: a REQUEST to each
target agent (sync reads, masks in force) with its REPLYs gathered back by request
id, and CONTROL orders (``set_masks``) on each node's route.

A read's answer marks each node's values live or cached and lists the nodes that
are down, unknown or timed out. Identical reads that arrive while one is in flight
share its answer.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import time
from collections import defaultdict
from typing import Any, Callable

from clumon.proto.frames import Control, Reply, Request
from clumon.proto.tree import Routes
from clumon.root.registry import Registry

Send = Callable[[str, Request], bool]


class Downward:
    """Fan requests out to target nodes and gather their replies by request id."""

    def __init__(self, registry: Registry, routes: Routes, send: Send, name: str):
        self.registry = registry
        self.routes = routes
        self._send = send
        self._ids = itertools.count(1)
        self._prefix = f"{name}-{time.time_ns():x}-"
        self._waiting: dict[str, tuple[set[str], dict[str, Any], asyncio.Future]] = {}
        self._inflight: dict[tuple, asyncio.Future] = {}
        self.requests = 0

    def resolve(self, targets: list[str]) -> tuple[list[str], list[str]]:
        """(known agent names, unknown names) for names, comma lists and globs."""
        agents: list[str] | None = None  # only globs need the whole list (O(nodes))
        found: list[str] = []
        seen: set[str] = set()
        unknown: list[str] = []
        for t in targets:
            for part in filter(None, (p.strip() for p in t.split(","))):
                if any(c in part for c in "*?["):
                    if agents is None:
                        agents = [n for n, s in self.registry.nodes.items() if s.role == "agent"]
                    hits = [n for n in agents if fnmatch.fnmatchcase(n, part)
                            or fnmatch.fnmatchcase(self.registry.nodes[n].path + "/" + n, part)]
                    for h in hits:
                        if h not in seen:
                            seen.add(h)
                            found.append(h)
                    if not hits:
                        unknown.append(part)
                elif part in self.registry.nodes:
                    if part not in seen:
                        seen.add(part)
                        found.append(part)
                else:
                    unknown.append(part)
        return found, unknown

    async def read(self, targets: list[str], series: list[str], max_age: float, timeout: float) -> dict:
        """A fresh read of ``targets``; a read identical to one in flight shares its answer."""
        key = (tuple(targets), tuple(series), max_age)
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self.ask("read", targets, {"series": series, "max_age": max_age}, timeout)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: sharers re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)

    def control(self, node: str, op: str, args: dict) -> bool:
        """Send a CONTROL towards ``node`` on its route; False when there is none."""
        hop = self.routes.child_for(node)
        return hop is not None and self._send(hop, Control(op, node, args))

    async def ask(self, op: str, targets: list[str], args: dict, timeout: float) -> dict:
        """Send REQUEST ``op`` to each target agent and gather their replies by node."""
        self.requests += 1
        nodes, unknown = self.resolve(targets)
        down = [n for n in nodes if self.registry.nodes[n].state in ("down", "unreachable")]
        ask = [n for n in nodes if n not in down]
        by_hop: dict[str, list[str]] = defaultdict(list)
        for n in ask:
            hop = self.routes.child_for(n)
            if hop is None:
                unknown.append(n)
            else:
                by_hop[hop].append(n)
        rid = self._prefix + str(next(self._ids))
        expected = {n for ns in by_hop.values() for n in ns}
        results: dict[str, Any] = {}
        done = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (expected, results, done)
        # each hop gets a little less time than we have, so its answer still fits
        hop_timeout = max(0.05, timeout * 0.8)
        for hop, ns in by_hop.items():
            req = Request(rid, op, tuple(ns), args, hop_timeout)
            if not self._send(hop, req):
                expected.difference_update(ns)
                down.extend(ns)
        try:
            if expected - set(results):
                async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                    await done
        except TimeoutError:
            pass
        finally:
            self._waiting.pop(rid, None)
        timed_out = sorted(expected - set(results))
        return {"nodes": results, "down": sorted(down), "unknown": sorted(unknown), "timed_out": timed_out}

    def reply(self, body: Reply) -> None:
        """A REPLY came up the tree; file each node's part under its request."""
        waiting = self._waiting.get(body.id)
        if waiting is None or not body.ok or not isinstance(body.result, dict):
            return
        expected, results, done = waiting
        for node, value in body.result.items():
            if node in expected:
                results[node] = value
        if expected <= results.keys() and not done.done():
            done.set_result(None)
