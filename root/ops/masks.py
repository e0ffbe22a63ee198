"""Run-time masks from the root: the ``masks`` and ``set_mask`` ops, and the mask
changes waiting for agents that could not take them when they were made.

``set_mask`` resolves its target (a node, a comma list, a glob over names or tree
paths, or an aggregator for its whole subtree) to agents, sends each a CONTROL
``set_masks`` down its route, then asks them (REQUEST ``masks``, which travels
behind the CONTROL on the same path) what is in force, so an answer confirms the
change. An agent that is down or unreachable, or that did not answer in time, keeps
the change as *pending*: the root remembers it (in ``state_dir``, so a root restart
keeps it too), sends it again whenever that agent is up, and forgets it once the
agent confirms it or a later ``set_mask`` replaces it. An operator who masks a rack
while half of it is rebooting gets the whole rack masked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from clumon.proto.liveness import AWAY
from clumon.proto.maskrules import MaskError, MaskSet
from clumon.root.downward import Downward
from clumon.root.ops.base import OPERATOR, Op, QueryError, arg
from clumon.root.pending_masks import PendingMasks
from clumon.root.registry import Registry

log = logging.getLogger("clumon.root.masks")


class MaskOps:
    """The ``masks`` and ``set_mask`` ops over the root's ``Downward``, and the
    delivery of pending changes (``deliver_pending``, a task of the root)."""

    def __init__(self, downward: Downward, state_dir: Path | None, retry_every: float = 5.0):
        self.downward = downward
        self.pending = PendingMasks(state_dir / "pending_masks.json" if state_dir is not None else None)
        self.retry_every = retry_every
        self._delivering: dict[str, asyncio.Task] = {}

    def ops(self) -> list[Op]:
        return [Op("masks", self.masks, targets=lambda a: [a.get("node")]),
                Op("set_mask", self.set_mask, role=OPERATOR, mutating=True, targets=lambda a: [a.get("target")])]

    async def masks(self, args: dict) -> dict:
        node = arg(args, "node", str)
        timeout = float(arg(args, "timeout", (int, float), 3.0, check=lambda v: 0 < v <= 60))
        got = await self.downward.ask("masks", [node], {}, timeout)
        if node in got["nodes"]:
            return {"node": node, **got["nodes"][node], "pending": self.pending.items.get(node)}
        waiting = " (a mask change waits for it)" if node in self.pending.items else ""
        if got["unknown"]:
            raise QueryError("unknown_node", f"no agent named {node!r}")
        if got["down"]:
            raise QueryError("node_down", f"{node} is down or unreachable{waiting}")
        raise QueryError("timeout", f"{node} did not answer within {timeout:g} s{waiting}")

    async def set_mask(self, args: dict) -> dict:
        target = arg(args, "target", str)
        control = _control(args)
        timeout = float(arg(args, "timeout", (int, float), 5.0, check=lambda v: 0 < v <= 60))
        nodes, unknown = self.downward.resolve([target])
        nodes = agents_under(self.downward.registry, nodes)
        if not nodes:
            raise QueryError("unknown_node", f"no agent matches {target!r}")
        at = time.time()
        # recorded first: a change is never lost between sending and confirming
        self.pending.put(nodes, control, at)
        got = await self._send(nodes, control, timeout)
        self.pending.drop(list(got["nodes"]), only_set_at=at)
        down = sorted(set(nodes) - set(got["sent"]))
        return {"target": target, "in_force": got["nodes"], "timed_out": got["timed_out"], "down": down,
                "unknown": unknown, "pending": sorted(n for n in nodes if n in self.pending.items)}

    async def _send(self, nodes: list[str], control: dict, timeout: float) -> dict:
        registry: Registry = self.downward.registry
        sent = [n for n in nodes if n in registry.nodes and registry.nodes[n].state not in AWAY
                and self.downward.control(n, "set_masks", control)]
        got = await self.downward.ask("masks", sent, {}, timeout) if sent else {"nodes": {}, "timed_out": []}
        return {**got, "sent": sent}

    async def deliver_pending(self, stop: asyncio.Event | None = None) -> None:
        """Every ``retry_every`` seconds, send each pending change whose agent is up."""
        while stop is None or not stop.is_set():
            await asyncio.sleep(self.retry_every)
            registry: Registry = self.downward.registry
            for node in list(self.pending.items):
                known = registry.nodes.get(node)
                if known is None:  # forgotten: nobody to deliver to
                    self.pending.drop([node])
                elif known.state not in AWAY and node not in self._delivering:
                    self._delivering[node] = asyncio.get_running_loop().create_task(self._deliver(node))

    async def _deliver(self, node: str) -> None:
        try:
            # the change pending now, read in the same loop step that sends it: a
            # set_mask that replaced it meanwhile is never overtaken by the old one
            item = self.pending.items.get(node)
            if item is None:
                return
            got = await self._send([node], item["control"], max(1.0, self.retry_every))
            if node in got["nodes"]:
                self.pending.drop([node], only_set_at=item["set_at"])
                log.info("pending mask change delivered to %s", node)
        finally:
            self._delivering.pop(node, None)


def _control(args: dict) -> dict[str, Any]:
    """The CONTROL ``set_masks`` arguments, validated as the agent will."""
    if arg(args, "reset", bool, False):
        return {"reset": True}
    rules = arg(args, "masks", list, [])
    control: dict[str, Any] = {"masks": rules}
    for key in ("min_change", "min_change_abs", "max_silence"):
        value = arg(args, key, (int, float), None)
        if value is not None:
            control[key] = value
    try:
        MaskSet.from_dict({**control, "rules": rules})
    except MaskError as exc:
        raise QueryError("bad_args", f"argument 'masks': {exc}") from None
    return control


def agents_under(registry: Registry, names: list[str]) -> list[str]:
    """Agents among ``names``, an aggregator standing for every agent behind it."""
    out: list[str] = []
    for n in names:
        node = registry.nodes[n]
        below = [m for m in registry.behind(n) if registry.nodes[m].role == "agent"] if node.role == "aggregator" else [n]
        out.extend(m for m in below if m not in out)
    return out
