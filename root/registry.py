"""The root's live view of the tree: every node's path, state and inventory.

States come from three places: the root's own liveness of its direct children,
``state`` EVENTs that aggregators send about theirs, and frames (a node that
sends is alive). A dead aggregator makes its whole subtree ``unreachable`` in one
event. Changed nodes are handed to the writer as ``NodeRow``s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

from clumon.proto.liveness import DOWN, SUSPECT, UNREACHABLE, UP
from clumon.root.storage import NodeRow


@dataclass(slots=True)
class NodeState:
    name: str
    path: str = ""
    role: str = "agent"
    state: str = UP
    since: float = 0.0
    incarnation: int = 0
    last_seen: float = 0.0
    inventory: dict = field(default_factory=dict)

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[-1] if self.path else ""

    def row(self) -> NodeRow:
        return NodeRow(self.name, self.path, self.parent, self.role, self.state, self.since,
                       self.incarnation, self.last_seen, self.inventory)

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "parent": self.parent, "role": self.role,
                "state": self.state, "since": self.since, "incarnation": self.incarnation,
                "last_seen": self.last_seen}


#: (subject, old state, new state, attrs) for events the root itself stores
RootEvent = tuple[str, str, str, dict]


class Registry:
    """Nodes by name; records which changed since the last ``take_dirty``."""

    def __init__(self, rows: Iterable[NodeRow] = ()):
        self.nodes: dict[str, NodeState] = {}
        for r in rows:
            self.nodes[r.name] = NodeState(r.name, r.path, r.role, r.state, r.since, r.incarnation,
                                           r.last_seen, dict(r.inventory))
        self._dirty: set[str] = set()

    def _get(self, name: str, path: str, ts: float) -> NodeState:
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = NodeState(name, path, state=UP, since=ts)
            self._dirty.add(name)
        return node

    def seen(self, name: str, path: str, incarnation: int, ts: float) -> RootEvent | None:
        """A stored frame from ``name`` arrived through ``path``."""
        node = self._get(name, path, ts)
        # an older incarnation's frame is a replay by the newer run: it keeps its number
        if node.path != path or node.incarnation < incarnation:
            node.path, node.incarnation = path, max(node.incarnation, incarnation)
            self._dirty.add(name)
        node.last_seen = max(node.last_seen, ts)
        # Frames made after the subtree went unreachable prove the node lives
        # (its aggregator came back, or it failed over); replayed old ones do not.
        if node.state == UNREACHABLE and ts > node.since:
            old = node.state
            self._move(node, UP, time.time())
            return (name, old, UP, {"reason": "frames arrive again"})
        return None

    def hello(self, name: str, path: str, incarnation: int, ts: float, role: str, inventory: dict) -> None:
        node = self._get(name, path, ts)
        if incarnation < node.incarnation:
            return  # the pinned HELLO of a predecessor, replayed with its spool
        node.role, node.inventory, node.incarnation, node.path = role, dict(inventory), incarnation, path
        self._dirty.add(name)

    def _move(self, node: NodeState, state: str, at: float) -> None:
        node.state, node.since = state, at
        self._dirty.add(node.name)

    def transition(self, subject: str, new: str, at: float, incarnation: int | None = None,
                   role: str | None = None, path: str | None = None) -> RootEvent | None:
        """Apply a liveness transition reported by the parent at ``path``;
        for a dead aggregator, one event for its whole subtree."""
        node = self.nodes.get(subject)
        if node is None:
            if new in (DOWN, SUSPECT, UNREACHABLE):
                return None  # news of a node we do not know (or forgot) going away
            node = self.nodes[subject] = NodeState(subject, path or "", state=new, since=at)
        elif path is not None and node.path != path:
            node.path = path
        if role and node.role != role:
            node.role = role
        if incarnation:
            node.incarnation = incarnation
        self._move(node, new, at)
        if new == DOWN and node.role == "aggregator":
            behind = self.behind(subject)
            for n in behind:
                self._move(self.nodes[n], UNREACHABLE, at)
            if behind:
                return (subject, DOWN, UNREACHABLE, {"nodes": sorted(behind), "count": len(behind)})
        return None

    def behind(self, aggregator: str) -> list[str]:
        """Every node whose path goes through ``aggregator``."""
        return [n.name for n in self.nodes.values()
                if aggregator in n.path.split("/") and n.name != aggregator]

    def forget(self, name: str) -> bool:
        self._dirty.discard(name)
        return self.nodes.pop(name, None) is not None

    def take_dirty(self) -> list[NodeRow]:
        rows = [self.nodes[n].row() for n in self._dirty if n in self.nodes]
        self._dirty.clear()
        return rows

    def put_back(self, rows: list[NodeRow]) -> None:
        """A write failed: mark its nodes dirty again."""
        self._dirty.update(r.name for r in rows)
