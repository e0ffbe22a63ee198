"""Ops over what the database holds: ``series``, ``summary``, ``events``.

Each read of the database runs in an executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import difflib

from clumon.proto.tree import LatestCache
from clumon.root.config import TIERS
from clumon.root.ops.base import SITE, Op, QueryError, arg, time_arg
from clumon.root.registry import Registry
from clumon.root.storage import Store


async def recent_events(store: Store, node: str | None, kind: str | None, since: float, limit: int) -> list[dict]:
    """Stored events, newest first, as the ``events`` op returns them."""
    loop = asyncio.get_running_loop()
    rows = await loop.run_in_executor(None, lambda: store.events(node, kind, since, limit))
    return [{"ts": e.ts, "subject": e.subject, "type": e.type, "message": e.message,
             "attrs": e.attrs, "source": e.source} for e in rows]


class StoredOps:
    """``series``, ``summary`` and ``events`` over the store."""

    def __init__(self, registry: Registry, store: Store, cache: LatestCache | None = None):
        self.registry = registry
        self.store = store
        self.cache = cache

    def ops(self) -> list[Op]:
        return [Op("series", self.series, targets=lambda a: [a.get("node")]),
                Op("summary", self.summary, targets=lambda a: [a["node"]] if a.get("node") else SITE),
                Op("events", self.events, targets=lambda a: [a["node"]] if a.get("node") else None,
                   rows=lambda result, mine: [e for e in result if mine(e.get("subject", ""))])]

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
        if not got.get("points"):
            self._check_known(node, name)
        return {"node": node, "series": name, "since": since, "until": until, **got}

    def _check_known(self, node: str, name: str) -> None:
        """An empty answer for a series the node never had is a misspelt name: say so."""
        if self.cache is None:
            return
        names = {n for (who, _, _), series in list(self.cache.dictionaries.items()) if who == node for n in series}
        if names and name not in names:
            near = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; see clumon latest {node}"
            raise QueryError("unknown_series", f"{node} has no series {name!r}{hint}")

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
        return await recent_events(self.store, node, kind, since, limit)
