"""Ops about the root itself and its live view: ``health`` and ``forget``."""

from __future__ import annotations

from typing import Callable

from clumon.root.ops.base import OPERATOR, Op, QueryError, arg


class AdminOps:
    """``health`` (the root's own figures) and ``forget`` (drop a decommissioned node)."""

    def __init__(self, health: Callable[[], dict], forget: Callable[[str], bool]):
        self._health = health
        self._forget = forget

    def ops(self) -> list[Op]:
        return [Op("health", self.health), Op("forget", self.forget, role=OPERATOR, mutating=True)]

    async def health(self, args: dict) -> dict:
        return self._health()

    async def forget(self, args: dict) -> dict:
        node = arg(args, "node", str)
        if not self._forget(node):
            raise QueryError("unknown_node", f"no node named {node!r}")
        return {"forgotten": node}
