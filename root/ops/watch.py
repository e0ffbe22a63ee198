"""Ops of the agents' service and process watch, through the tree: ``services``
(every node's services), ``service`` (start, stop or restart one on some nodes)
and ``procs`` (one node's top and flagged processes, fresh)."""

from __future__ import annotations

import fnmatch

from clumon.root.downward import Downward
from clumon.root.ops.base import OPERATOR, Op, QueryError, arg

STATES = ("starting", "running", "backoff", "stopped", "exited", "fatal")


class WatchOps:
    def __init__(self, downward: Downward):
        self.downward = downward

    def ops(self) -> list[Op]:
        return [Op("services", self.services, targets=lambda a: a.get("targets") or None, rows=_service_rows),
                Op("service", self.service, OPERATOR, mutating=True, targets=lambda a: a.get("targets") or None),
                Op("procs", self.procs, targets=lambda a: [a.get("node")])]

    def _targets(self, args: dict, default: list[str] | None = None) -> list[str]:
        targets = arg(args, "targets", list, default)
        if not targets or not all(isinstance(t, str) for t in targets):
            raise QueryError("bad_args", "argument 'targets': expected a non-empty list of names or globs")
        found, unknown = self.downward.resolve(targets)
        if not found:
            raise QueryError("unknown_node", f"no node matches {', '.join(repr(u) for u in unknown)}; see clumon nodes")
        return targets

    async def services(self, args: dict) -> dict:
        """Each node's services, filtered by a glob on the service name and states."""
        targets = self._targets(args, ["*"])
        glob = arg(args, "service", str, "*")
        states = arg(args, "states", list, None, check=lambda v: all(s in STATES for s in v))
        timeout = float(arg(args, "timeout", (int, float), 5.0, check=lambda v: 0 < v <= 60))
        got = await self.downward.ask("services", targets, {}, timeout)
        rows = []
        for node, services in sorted(got["nodes"].items()):
            if not isinstance(services, list):
                continue
            for s in services:
                if isinstance(s, dict) and fnmatch.fnmatchcase(str(s.get("name", "")), glob) and \
                        (states is None or s.get("state") in states):
                    rows.append({"node": node, **s})
        return {"services": rows, "down": got["down"], "unknown": got["unknown"], "timed_out": got["timed_out"]}

    async def service(self, args: dict) -> dict:
        """Start, stop or restart a service on each target node; each node's outcome."""
        action = arg(args, "action", str, check=lambda v: v in ("start", "stop", "restart"))
        name = arg(args, "name", str, check=bool)
        targets = self._targets(args)
        timeout = float(arg(args, "timeout", (int, float), 30.0, check=lambda v: 0 < v <= 600))
        return await self.downward.ask("service", targets, {"action": action, "name": name}, timeout)

    async def procs(self, args: dict) -> dict:
        node = arg(args, "node", str, check=bool)
        if node not in self.downward.registry.nodes:
            raise QueryError("unknown_node", f"no node named {node!r}")
        top = arg(args, "top", int, 10, check=lambda v: 0 < v <= 1000)
        got = await self.downward.ask("procs", [node], {"top": top}, 10.0)
        answer = got["nodes"].get(node)
        if isinstance(answer, dict) and "error" in answer:
            raise QueryError("no_procs", f"{node}: {answer['error']}")
        if answer is None:
            why = "down" if node in got["down"] else "timed out" if node in got["timed_out"] else "no answer"
            raise QueryError("no_answer", f"{node}: {why} (an agent without [[service]] or [processes] has no procs op)")
        return {"node": node, **answer}


def _service_rows(result: dict, mine) -> dict:
    """An operator's ``services``: those of their nodes."""
    return {**result, "services": [r for r in result.get("services", []) if mine(r.get("node", ""))]}
