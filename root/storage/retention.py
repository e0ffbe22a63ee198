"""Retention: each tier keeps what is younger than its horizon.

A rollup bucket is removed when its start is older than ``now - horizon``;
chunks when their window's start is; raw frames and compacted seq ranges when
their time is. Events, nodes and state history are not aged here.
"""

from __future__ import annotations

import sqlalchemy as sa

from . import schema as S


def apply(conn: sa.Connection, now: float, retention: dict[str, float]) -> dict[str, int]:
    """Delete what each tier no longer keeps; returns rows deleted per table."""
    raw = now - retention["raw"]
    done = {
        "chunks": conn.execute(S.chunks.delete().where(S.chunks.c.start < raw)).rowcount,
        "frames": conn.execute(S.frames.delete().where(S.frames.c.ts < raw)).rowcount,
        "compacted": conn.execute(S.compacted.delete().where(S.compacted.c.last_ts < raw)).rowcount,
    }
    for tier, table in S.rollups.items():
        done[table.name] = conn.execute(table.delete().where(table.c.bucket < now - retention[tier])).rowcount
    return done
