"""The ``read`` op: a fresh read through the tree (``clumon read``)."""

from __future__ import annotations

from clumon.root.downward import Downward
from clumon.root.ops.base import Op, QueryError, arg


class ReadOps:
    """``read`` over the root's ``Downward``."""

    def __init__(self, downward: Downward):
        self.downward = downward

    def ops(self) -> list[Op]:
        return [Op("read", self.read, targets=lambda a: _names(a.get("targets")))]

    async def read(self, args: dict) -> dict:
        targets = arg(args, "targets", list)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise QueryError("bad_args", "argument 'targets': expected a non-empty list of names or globs")
        series = arg(args, "series", list, [])
        max_age = float(arg(args, "max_age", (int, float), 0.0, check=lambda v: v >= 0))
        timeout = float(arg(args, "timeout", (int, float), 3.0, check=lambda v: 0 < v <= 60))
        found, unknown = self.downward.resolve(targets)
        nodes = self.downward.registry.nodes
        others = [n for n in found if nodes[n].role != "agent"]
        if others:
            n = others[0]
            raise QueryError("not_an_agent", f"{n} is {'the root' if nodes[n].role == 'root' else 'an aggregator'}, "
                                             f"not an agent: read the nodes under it with '{n}/*' or name them")
        if not found:
            raise QueryError("unknown_node", f"no node matches {', '.join(repr(u) for u in unknown)}; "
                                             "see clumon nodes")
        return await self.downward.read(targets, series, max_age, timeout)


def _names(targets) -> list:
    return list(targets) if isinstance(targets, list) and targets else [None]
