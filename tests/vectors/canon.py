"""Frames as plain JSON values, and back, for the golden vectors.

The JSON form is what a person reads in ``frames.json``: DATA values as a list of
floats (``null`` for NaN, i.e. a missing value) and its index as a list of ints,
other bytes (BATCH items) as hex. Both directions are exact, so a vector's value
can be compared with what ``decode`` returns and encoded back to the pinned bytes.
"""

from __future__ import annotations

import math
from typing import Any

from clumon.proto.frames import (
    Ack,
    AckEntry,
    Batch,
    Control,
    Data,
    Event,
    Frame,
    Heartbeat,
    Hello,
    Kind,
    Log,
    LogFile,
    Reply,
    Request,
)


def _body_to_json(kind: Kind, b: Any) -> dict:
    if kind is Kind.HELLO:
        return {"dict_version": b.dict_version, "series": list(b.series), "inventory": b.inventory, "role": b.role}
    if kind is Kind.DATA:
        values = [None if math.isnan(v) else v for v in b.value_array().tolist()]
        index = None if b.index is None else b.index_array().tolist()
        return {"dict_version": b.dict_version, "values": values, "index": index}
    if kind is Kind.EVENT:
        return {"type": b.type, "subject": b.subject, "message": b.message, "attrs": b.attrs}
    if kind is Kind.BATCH:
        return {"frames": [f.hex() for f in b.frames]}
    if kind is Kind.HEARTBEAT:
        return {"root": b.root}
    if kind is Kind.ACK:
        return {"entries": [{"node": e.node, "incarnation": e.incarnation, "ranges": [list(r) for r in e.ranges]}
                            for e in b.entries]}
    if kind is Kind.REQUEST:
        return {"id": b.id, "op": b.op, "targets": list(b.targets), "args": b.args, "timeout": b.timeout}
    if kind is Kind.REPLY:
        return {"id": b.id, "ok": b.ok, "result": b.result, "error": b.error}
    if kind is Kind.CONTROL:
        return {"op": b.op, "target": b.target, "args": b.args}
    if kind is Kind.LOG:
        return {"format": b.format, "files": [
            {"fid": f.fid, "source": f.source, "path": f.path, "ts": f.ts, "end": f.end,
             "offsets": list(f.offsets), "lines": list(f.lines),
             "fields": None if f.fields is None else list(f.fields), "matches": [list(m) for m in f.matches]}
            for f in b.files]}
    raise AssertionError(kind)


def _body_from_json(kind: Kind, j: dict) -> Any:
    if kind is Kind.HELLO:
        return Hello(j["dict_version"], tuple(j["series"]), j["inventory"], j["role"])
    if kind is Kind.DATA:
        return Data.from_values(j["dict_version"], j["values"], j["index"])
    if kind is Kind.EVENT:
        return Event(j["type"], j["subject"], j["message"], j["attrs"])
    if kind is Kind.BATCH:
        return Batch(tuple(bytes.fromhex(f) for f in j["frames"]))
    if kind is Kind.HEARTBEAT:
        return Heartbeat(j["root"])
    if kind is Kind.ACK:
        return Ack(tuple(AckEntry(e["node"], e["incarnation"], tuple((lo, hi) for lo, hi in e["ranges"]))
                         for e in j["entries"]))
    if kind is Kind.REQUEST:
        return Request(j["id"], j["op"], tuple(j["targets"]), j["args"], j["timeout"])
    if kind is Kind.REPLY:
        return Reply(j["id"], j["ok"], j["result"], j["error"])
    if kind is Kind.CONTROL:
        return Control(j["op"], j["target"], j["args"])
    if kind is Kind.LOG:
        return Log(tuple(LogFile(f["fid"], f["source"], f["path"], f["ts"], f["end"], tuple(f["offsets"]),
                                 tuple(f["lines"]), None if f["fields"] is None else tuple(f["fields"]),
                                 tuple((i, r) for i, r in f["matches"])) for f in j["files"]), j["format"])
    raise AssertionError(kind)


def frame_to_json(f: Frame) -> dict:
    """A frame as a JSON-compatible dict."""
    return {
        "version": f.version,
        "kind": f.kind.name,
        "sender": f.sender,
        "incarnation": f.incarnation,
        "ts": f.ts,
        "seq": f.seq,
        "body": _body_to_json(f.kind, f.body),
    }


def frame_from_json(j: dict) -> Frame:
    """The frame a JSON value describes (the inverse of ``frame_to_json``)."""
    kind = Kind[j["kind"]]
    return Frame(kind, j["sender"], j["incarnation"], j["ts"], _body_from_json(kind, j["body"]), j["seq"], j["version"])
