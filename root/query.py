"""The root's query ops, dispatched by an explicit table keyed by op name.

Each op validates its arguments and returns a msgpack-able result or raises
``QueryError``; the server turns that into ``{ok: false, error: {code, message}}``.
Anything that reads the database runs in an executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
from typing import Any, Awaitable, Callable

from clumon.proto.liveness import STATES
from clumon.proto.tree import LatestCache
from clumon.root.overview import overview
from clumon.root.registry import Registry
from clumon.root.storage import Store


#: storage tiers a client may ask for
TIERS = ("raw", "1m", "30m", "2h", "1d")


class QueryError(Exception):
    """A request that cannot be answered; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def arg(args: dict, name: str, kind: type | tuple[type, ...], default: Any = ..., *, check=None) -> Any:
    """One validated argument; a missing or ill-typed one is a ``bad_args`` error."""
    if name not in args or args[name] is None:
        if default is ...:
            raise QueryError("bad_args", f"missing argument '{name}'")
        return default
    value = args[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise QueryError("bad_args", f"argument '{name}': expected {_kname(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise QueryError("bad_args", f"argument '{name}': expected {_kname(kind)}, got {value!r}")
    if check is not None and not check(value):
        raise QueryError("bad_args", f"argument '{name}': value {value!r} out of range")
    return value


def _kname(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def time_arg(args: dict, name: str, default: float) -> float:
    """A time: absolute unix seconds, or (if below 1e9) seconds before now."""
    value = arg(args, name, (int, float), default, check=lambda v: math.isfinite(v) and v >= 0)
    return float(value) if value >= 1e9 else time.time() - float(value)


Handler = Callable[[dict], Awaitable[Any]]


class Queries:
    """The op table and the ops over the registry, cache, store and ingest."""

    def __init__(self, registry: Registry, cache: LatestCache, store: Store, health: Callable[[], dict],
                 forget: Callable[[str], bool], read: Callable[[dict], Awaitable[Any]] | None = None):
        self.registry = registry
        self.cache = cache
        self.store = store
        self._health = health
        self._forget = forget
        self.ops: dict[str, Handler] = {
            "nodes": self.nodes,
            "tree": self.tree,
            "latest": self.latest,
            "series": self.series,
            "summary": self.summary,
            "events": self.events,
            "health": self.health,
            "forget": self.forget,
            "overview": self.overview,
        }
        if read is not None:
            self.ops["read"] = read
        #: ops that change anything: loopback only until authentication lands
        self.mutating = frozenset({"forget", "set_mask"})

    async def dispatch(self, op: Any, args: Any) -> Any:
        if not isinstance(op, str) or op not in self.ops:
            raise QueryError("unknown_op", f"unknown op {op!r}; known: {', '.join(sorted(self.ops))}")
        if not isinstance(args, dict):
            raise QueryError("bad_args", "args must be a map")
        return await self.ops[op](args)

    async def nodes(self, args: dict) -> list[dict]:
        """Every node, or those of a ``role``, in ``states`` and matching a glob of
        ``match`` over names or tree paths (``agg-7/*``)."""
        role = arg(args, "role", str, None)
        states = arg(args, "states", list, None, check=lambda v: all(s in STATES for s in v))
        match = arg(args, "match", str, None)
        out = [n.as_dict() for n in self.registry.nodes.values()
               if (role is None or n.role == role) and (states is None or n.state in states)
               and (match is None or fnmatch.fnmatchcase(n.name, match)
                    or fnmatch.fnmatchcase(f"{n.path}/{n.name}" if n.path else n.name, match))]
        return sorted(out, key=lambda n: (n["path"], n["name"]))

    async def tree(self, args: dict) -> dict:
        """Nested topology: each tier with its state and counts of its nodes by state."""
        root: dict = {"name": "root", "role": "root", "state": "up", "children": []}
        index = {"": root}
        for n in sorted(self.registry.nodes.values(), key=lambda n: (n.path.count("/") if n.path else -1, n.name)):
            if n.role == "root":  # the root's own health node is the top of the tree, not a child of it
                root.update(name=n.name, since=n.since)
                continue
            entry = {"name": n.name, "role": n.role, "state": n.state, "since": n.since, "children": []}
            parent = index.get(n.path) or index.setdefault(n.path, {"name": n.parent, "role": "aggregator",
                                                                     "state": "unknown", "children": []})
            parent["children"].append(entry)
            if n.role == "aggregator":
                index[(n.path + "/" if n.path else "") + n.name] = entry
        def count(entry: dict) -> dict:
            states: dict[str, int] = {}
            for c in entry["children"]:
                if c["role"] != "aggregator":
                    states[c["state"]] = states.get(c["state"], 0) + 1
                for k, v in count(c).items():
                    states[k] = states.get(k, 0) + v
            entry["nodes_by_state"] = states
            return states
        count(root)
        return root

    async def latest(self, args: dict) -> dict:
        node = arg(args, "node", str)
        globs = arg(args, "series", list, [])
        if node not in self.registry.nodes:
            raise QueryError("unknown_node", f"no node named {node!r}")
        values = self.cache.latest(node)
        if globs:
            values = {k: v for k, v in values.items() if any(fnmatch.fnmatchcase(k, g) for g in globs)}
        return {"node": node, "state": self.registry.nodes[node].state,
                "values": {k: [v, ts] for k, (v, ts) in sorted(values.items())}}

    async def series(self, args: dict) -> dict:
        """Stored points of one series: raw [ts, value] pairs, or rollup buckets
        (ts, min, max, sum, count, avg); the tier follows range and step unless given."""
        node = arg(args, "node", str)
        name = arg(args, "series", str)
        since = time_arg(args, "since", 3600.0)
        until = time_arg(args, "until", 0.0)
        step = arg(args, "step", (int, float), None, check=lambda v: v > 0)
        tier = arg(args, "tier", str, None, check=lambda v: v in TIERS)
        if node not in self.registry.nodes:
            raise QueryError("unknown_node", f"no node named {node!r}")
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, lambda: self.store.series(node, name, since, until, step, tier))
        return {"node": node, "series": name, "since": since, "until": until, **got}

    async def summary(self, args: dict) -> dict:
        """One series across the cluster, or per aggregator, from the rollups."""
        name = arg(args, "series", str)
        since = time_arg(args, "since", 3600.0)
        until = time_arg(args, "until", 0.0)
        by = arg(args, "by", str, "cluster", check=lambda v: v in ("cluster", "aggregator"))
        tier = arg(args, "tier", str, None, check=lambda v: v in TIERS and v != "raw")
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, lambda: self.store.summary(name, since, until, by, tier))
        return {"series": name, "since": since, "until": until, **got}

    async def events(self, args: dict) -> list[dict]:
        node = arg(args, "node", str, None)
        kind = arg(args, "kind", str, None)
        since = time_arg(args, "since", 86400.0)
        limit = arg(args, "limit", int, 200, check=lambda v: 0 < v <= 100000)
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, lambda: self.store.events(node, kind, since, limit))
        return [{"ts": e.ts, "subject": e.subject, "type": e.type, "message": e.message,
                 "attrs": e.attrs, "source": e.source} for e in rows]

    async def health(self, args: dict) -> dict:
        return self._health()

    async def overview(self, args: dict) -> dict:
        """``clumon top``'s view: states, hottest nodes, aggregators, recent events."""
        top = arg(args, "top", int, 10, check=lambda v: 0 < v <= 1000)
        result = overview(self.registry, self.cache, top)
        result["events"] = await self.events({"since": 86400.0, "limit": arg(args, "events", int, 8)})
        return result

    async def forget(self, args: dict) -> dict:
        node = arg(args, "node", str)
        if not self._forget(node):
            raise QueryError("unknown_node", f"no node named {node!r}")
        return {"forgotten": node}
