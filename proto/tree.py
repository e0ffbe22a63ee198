"""Tree logic shared by every parent tier: batch unwrapping, routes, latest values.

* ``walk`` opens a BATCH (and BATCHes nested in it, one per aggregator tier) and
  yields each inner frame with the path of aggregators it came through.
* ``Routes`` remembers through which direct child each node is reached, so acks,
  requests and controls go down the right link.
* ``LatestCache`` keeps the newest value of every series per node, as numpy arrays
  (a 5,000-node tree would need ~100 MB as Python dicts, ~12 MB this way).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import codec
from .frames import Data, Frame, Hello, Kind

BadFrame = Callable[[str, str], None]


def walk(
    frame: Frame,
    path: tuple[str, ...],
    data: bytes,
    on_bad: BadFrame,
    max_frame_bytes: int = codec.MAX_FRAME_BYTES,
    depth: int = 0,
) -> Iterator[tuple[tuple[str, ...], Frame, bytes]]:
    """Yield (path, frame, bytes) for a frame, or for every frame inside a BATCH.

    ``path`` lists the aggregators between the receiver and the frame's sender.
    A bad inner frame is reported through ``on_bad(sender, reason)`` and skipped;
    its neighbours are still delivered.
    """
    if frame.kind is not Kind.BATCH:
        yield path, frame, data
        return
    if depth >= codec.MAX_BATCH_DEPTH:
        on_bad(frame.sender, "BATCH nested too deep")
        return
    inner_path = path + (frame.sender,)
    for raw in frame.body.frames:
        try:
            inner = codec.decode(raw, max_frame_bytes)
        except codec.DecodeError as exc:
            on_bad(frame.sender, f"inside BATCH: {exc}")
            continue
        yield from walk(inner, inner_path, raw, on_bad, max_frame_bytes, depth + 1)


class Routes:
    """node name -> the direct child through which it is reached."""

    def __init__(self) -> None:
        self.via: dict[str, str] = {}

    def learn(self, node: str, child: str) -> None:
        self.via[node] = child

    def child_for(self, node: str) -> str | None:
        return self.via.get(node)

    def behind(self, child: str) -> list[str]:
        """Every node reached through ``child`` (the child itself included)."""
        return [n for n, c in self.via.items() if c == child]

    def forget(self, node: str) -> None:
        self.via.pop(node, None)


@dataclass(slots=True)
class NodeValues:
    incarnation: int
    dict_version: int
    names: tuple[str, ...]
    values: np.ndarray
    stamps: np.ndarray
    updated: float = 0.0


def _new_values(incarnation: int, dict_version: int, names: tuple[str, ...],
                before: NodeValues | None) -> NodeValues:
    """Empty values for a dictionary; a new dictionary of the same incarnation keeps
    the newest value of each series it still names (the agent sends a series again
    only when it changes, not because a mount came or went)."""
    n = len(names)
    nv = NodeValues(incarnation, dict_version, names, np.full(n, math.nan), np.zeros(n))
    if before is not None:
        where = {name: i for i, name in enumerate(before.names)}
        for i, name in enumerate(names):
            j = where.get(name)
            if j is not None:
                nv.values[i], nv.stamps[i] = before.values[j], before.stamps[j]
        nv.updated = before.updated
    return nv


class LatestCache:
    """Dictionaries and the newest value of every series, per node."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.dictionaries: dict[tuple[str, int, int], tuple[str, ...]] = {}
        self.nodes: dict[str, NodeValues] = {}
        self._wall = wall

    def hello(self, frame: Frame) -> None:
        body: Hello = frame.body
        self.dictionaries[(frame.sender, frame.incarnation, body.dict_version)] = body.series

    def names(self, node: str, incarnation: int, dict_version: int) -> tuple[str, ...] | None:
        return self.dictionaries.get((node, incarnation, dict_version))

    def data(self, frame: Frame) -> bool:
        """Apply a DATA frame; False when its dictionary is unknown (ask for a HELLO)."""
        body: Data = frame.body
        names = self.dictionaries.get((frame.sender, frame.incarnation, body.dict_version))
        if names is None:
            return False
        nv = self.nodes.get(frame.sender)
        if nv is None or nv.incarnation != frame.incarnation or nv.dict_version != body.dict_version:
            nv = _new_values(frame.incarnation, body.dict_version, names,
                             nv if nv is not None and nv.incarnation == frame.incarnation else None)
            self.nodes[frame.sender] = nv
        values = body.value_array()
        if body.index is None:
            if len(values) != len(names):
                return True  # malformed for this dictionary: ignore values, keep the frame
            nv.values[:] = values
            nv.stamps[:] = frame.ts
        else:
            idx = body.index_array()
            if len(idx) and int(idx.max()) >= len(names):
                return True
            nv.values[idx] = values
            nv.stamps[idx] = frame.ts
        nv.updated = frame.ts
        return True

    def latest(self, node: str) -> dict[str, tuple[float | None, float]]:
        """name -> (value or None, sender's timestamp) for series ever seen."""
        nv = self.nodes.get(node)
        if nv is None:
            return {}
        out = {}
        for name, v, ts in zip(nv.names, nv.values.tolist(), nv.stamps.tolist()):
            if ts:
                out[name] = (None if math.isnan(v) else v, ts)
        return out

    def forget(self, node: str) -> None:
        self.nodes.pop(node, None)
        for key in [k for k in self.dictionaries if k[0] == node]:
            del self.dictionaries[key]
