"""The rows the root stores and reads back: plain frozen dataclasses, shared by
``store.py`` (which re-exports them), ``ingest.py`` and ``history.py``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One stored frame: its key, time, kind and its original bytes (``payload``)."""

    node: str
    incarnation: int
    seq: int
    ts: float
    kind: int
    dict_version: int | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class DictionaryRow:
    """A HELLO's series dictionary and inventory."""

    node: str
    incarnation: int
    dict_version: int
    series: tuple[str, ...]
    inventory: dict
    role: str


@dataclass(frozen=True, slots=True)
class EventRow:
    """A decoded EVENT, keyed by the frame that carried it (stored once)."""

    ts: float
    subject: str
    type: str
    message: str
    attrs: dict
    source: str
    source_incarnation: int
    source_seq: int


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A node in the live view. ``path`` is the aggregators from the root down,
    joined by ``/`` (``""`` for a direct child of the root)."""

    name: str
    path: str
    parent: str
    role: str
    state: str
    since: float
    incarnation: int
    last_seen: float
    inventory: dict


@dataclass(frozen=True, slots=True)
class StateRow:
    """One period of a node's state, from ``since`` until the next row."""

    node: str
    since: float
    state: str
    incarnation: int


# --- as column dicts for SQL ---------------------------------------------------------


def frame_dict(f: FrameRow) -> dict:
    return {
        "node": f.node,
        "incarnation": f.incarnation,
        "seq": f.seq,
        "ts": f.ts,
        "kind": int(f.kind),
        "dict_version": f.dict_version,
        "payload": f.payload,
    }


def dict_dict(d: DictionaryRow) -> dict:
    return {
        "node": d.node,
        "incarnation": d.incarnation,
        "dict_version": d.dict_version,
        "series": list(d.series),
        "inventory": d.inventory,
        "role": d.role,
    }


def event_dict(e: EventRow) -> dict:
    return {
        "ts": e.ts,
        "subject": e.subject,
        "type": e.type,
        "message": e.message,
        "attrs": e.attrs,
        "source": e.source,
        "source_incarnation": e.source_incarnation,
        "source_seq": e.source_seq,
    }


def node_dict(n: NodeRow) -> dict:
    return {
        "name": n.name,
        "path": n.path,
        "parent": n.parent,
        "role": n.role,
        "state": n.state,
        "since": n.since,
        "incarnation": n.incarnation,
        "last_seen": n.last_seen,
        "inventory": n.inventory,
    }
