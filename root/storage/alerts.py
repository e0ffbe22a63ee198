"""Alerts and silences in SQL (schema version 6), for ``root/alerts/``.

The alert engine owns the rows: it writes the alerts that changed after each
evaluation (one transaction, upserted by fingerprint and start) and reads the
open ones back at start. Reads and writes run in an executor, never on the loop.
"""

from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa

from . import schema as S

OPEN = ("pending", "firing")
_COLUMNS = ("fingerprint", "started", "rule", "labels", "annotations", "state", "fired_at", "resolved_at",
            "value", "notified", "notified_at", "notifications")


def write(conn: sa.Connection, insert: Callable[[sa.Table], Any], rows: list[dict]) -> None:
    """Upsert alert rows (dicts with ``_COLUMNS``)."""
    if not rows:
        return
    t = S.alerts
    stmt = insert(t)
    stmt = stmt.on_conflict_do_update(index_elements=[t.c.fingerprint, t.c.started],
                                      set_={c: stmt.excluded[c] for c in _COLUMNS[2:]})
    conn.execute(stmt, [{c: r[c] for c in _COLUMNS} for r in rows])


def open_alerts(conn: sa.Connection) -> list[dict]:
    """Alerts not yet done with: pending, firing, or resolved but still to be told."""
    t = S.alerts
    q = sa.select(t).where(sa.or_(t.c.state.in_(OPEN), sa.and_(t.c.state == "resolved", t.c.notified == "firing")))
    q = q.order_by(t.c.started)  # of two with one fingerprint, the newer is the one in force
    return [dict(r._mapping) for r in conn.execute(q)]


def history(conn: sa.Connection, since: float, state: str | None = None, limit: int = 1000) -> list[dict]:
    """Alerts started or resolved since ``since``, newest first."""
    t = S.alerts
    q = sa.select(t).where(sa.or_(t.c.started >= since, t.c.resolved_at >= since, t.c.state.in_(OPEN)))
    if state:
        q = q.where(t.c.state == state)
    q = q.order_by(t.c.started.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def add_silence(conn: sa.Connection, matchers: list[str], starts: float, ends: float, created_by: str,
                reason: str) -> int:
    t = S.silences
    row = conn.execute(t.insert().values(matchers=matchers, starts=starts, ends=ends, created_by=created_by,
                                         reason=reason).returning(t.c.id)).first()
    return int(row[0])


def expire_silence(conn: sa.Connection, silence_id: int, now: float) -> bool:
    t = S.silences
    return conn.execute(t.update().where(t.c.id == silence_id, t.c.ends > now).values(ends=now)).rowcount > 0


def silences(conn: sa.Connection, since: float) -> list[dict]:
    """Silences that end after ``since`` (the active and the future ones)."""
    t = S.silences
    return [dict(r._mapping) for r in conn.execute(sa.select(t).where(t.c.ends > since).order_by(t.c.id))]
