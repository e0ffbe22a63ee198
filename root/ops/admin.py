"""Ops about the root itself and its live view: ``health`` and ``forget``."""

from __future__ import annotations

from typing import Callable

from clumon.proto.liveness import AWAY
from clumon.root.ops.base import OPERATOR, SITE_SCOPE, Op, QueryError, arg
from clumon.root.registry import Registry


class AdminOps:
    """``health`` (the root's own figures) and ``forget`` (drop a decommissioned node)."""

    def __init__(self, health: Callable[[], dict], forget: Callable[[str], bool], registry: Registry):
        self._health = health
        self._forget = forget
        self.registry = registry

    def ops(self) -> list[Op]:
        return [Op("health", self.health, scope=SITE_SCOPE),
                Op("forget", self.forget, role=OPERATOR, mutating=True, targets=lambda a: [a.get("node")])]

    async def health(self, args: dict) -> dict:
        return self._health()

    async def forget(self, args: dict) -> dict:
        """Drop a node from the live view; one that is alive is refused unless
        ``force`` (its next frame would bring it back at once)."""
        node = arg(args, "node", str)
        force = arg(args, "force", bool, False)
        known = self.registry.nodes.get(node)
        if known is not None and known.state not in AWAY and not force:
            raise QueryError("node_alive", f"{node} is {known.state}: it would come back with its next frame; "
                                           "stop its agent first (or force it)")
        if not self._forget(node):
            raise QueryError("unknown_node", f"no node named {node!r}")
        return {"forgotten": node}
