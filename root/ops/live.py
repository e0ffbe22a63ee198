"""Ops over the live view (the registry and the latest-values cache): ``nodes``,
``tree``, ``latest`` and ``overview`` (``clumon top``)."""

from __future__ import annotations

import fnmatch

from clumon.proto.liveness import STATES
from clumon.proto.tree import LatestCache
from clumon.root.ops.base import SITE_SCOPE, Op, QueryError, arg
from clumon.root.ops.stored import recent_events
from clumon.root.overview import node_figures, overview
from clumon.root.registry import Registry
from clumon.root.storage import Store


class LiveOps:
    """``nodes``, ``tree``, ``latest`` and ``overview``."""

    def __init__(self, registry: Registry, cache: LatestCache, store: Store):
        self.registry = registry
        self.cache = cache
        self.store = store

    def ops(self) -> list[Op]:
        return [Op("nodes", self.nodes, scope=SITE_SCOPE), Op("tree", self.tree, scope=SITE_SCOPE),
                Op("latest", self.latest, targets=lambda a: [a.get("node")]),
                Op("overview", self.overview, scope=SITE_SCOPE, for_user=_overview_for_user),
                Op("grid", self.grid, targets=self._rack, rows=_grid_rows)]

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
        _count_states(root)
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

    async def overview(self, args: dict) -> dict:
        """``clumon top``'s view: states, hottest nodes, aggregators, recent events."""
        top = arg(args, "top", int, 10, check=lambda v: 0 < v <= 1000)
        events = arg(args, "events", int, 8, check=lambda v: 0 < v <= 100000)
        result = overview(self.registry, self.cache, top)
        result["events"] = await recent_events(self.store, None, None, 86400.0, events)
        return result


    async def grid(self, args: dict) -> dict:
        """The agents under one ``aggregator`` (or matching ``match``, a glob over
        names or tree paths), each with its state and latest CPU, memory and load:
        the heat grid of a rack's page."""
        agg = arg(args, "aggregator", str, None)
        match = arg(args, "match", str, None)
        rows = []
        for n in self.registry.nodes.values():
            if n.role != "agent" or (agg is not None and n.parent != agg):
                continue
            if match is not None and not (fnmatch.fnmatchcase(n.name, match) or fnmatch.fnmatchcase(
                    f"{n.path}/{n.name}" if n.path else n.name, match)):
                continue
            figs = node_figures(self.cache, n.name) if n.state in ("up", "suspect", "restarted") else {}
            rows.append({"node": n.name, "aggregator": n.parent, "path": n.path, "state": n.state,
                         "since": n.since, "cpu": figs.get("cpu"), "memory": figs.get("memory"),
                         "load1": figs.get("load1")})
        if agg is not None and not rows and agg not in self.registry.nodes:
            raise QueryError("unknown_node", f"no aggregator named {agg!r}")
        return {"aggregator": agg, "nodes": sorted(rows, key=lambda r: r["node"])}


    def _rack(self, args: dict) -> list[str] | None:
        """The nodes a ``grid`` call reads, for the roles: an aggregator's agents (all
        of them an operator's, or refused), else every node (cut to theirs)."""
        agg = args.get("aggregator")
        if not isinstance(agg, str):
            return None
        n = self.registry.nodes.get(agg)
        path = (f"{n.path}/{agg}" if n.path else agg) if n is not None else agg
        return [f"{path}/*"]


def _grid_rows(result: dict, mine) -> dict:
    """An operator's grid: their nodes only."""
    return {**result, "nodes": [r for r in result["nodes"] if mine(r["node"])]}


def _count_states(entry: dict) -> dict[str, int]:
    """Fill each tier's ``nodes_by_state`` (agents below it, by state); return its own."""
    states: dict[str, int] = {}
    for c in entry["children"]:
        if c["role"] != "aggregator":
            states[c["state"]] = states.get(c["state"], 0) + 1
        for k, v in _count_states(c).items():
            states[k] = states.get(k, 0) + v
    entry["nodes_by_state"] = states
    return states


def _overview_for_user(result: dict) -> dict:
    """A user's overview: states and counts, no node's values and no events."""
    keep = {k: v for k, v in result.items() if not k.startswith("hottest_")}
    keep.update({k: [] for k in result if k.startswith("hottest_")}, events=[])
    return keep
