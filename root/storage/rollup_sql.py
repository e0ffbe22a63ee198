"""Rollup tables: merging drained buckets in, reading them back, picking a tier.

A drained bucket is merged into its row with ``INSERT ... ON CONFLICT DO
UPDATE``: min/max by comparison, count by addition, and the sum as a
double-double (TwoSum in SQL, evaluated in IEEE double by both SQLite and
PostgreSQL), so rows can be merged any number of times in any order.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from . import schema as S
from .pgcopy import copy_rows
from .rollup import SUM_LIMIT, TIER_WIDTH, TIERS, RollupRows

DAY = 86400.0
#: Default retention per tier, seconds ("raw" = chunks and frames).
RETENTION: dict[str, float] = {
    "raw": 3 * DAY,
    "1m": 30 * DAY,
    "30m": 180 * DAY,
    "2h": 2 * 365 * DAY,
    "1d": 10 * 365 * DAY,
}
#: A range is read at about this many points when no step is given.
TARGET_POINTS = 720


def _merge_clause(table: str) -> str:
    t, x = f'"{table}"', "excluded"
    total = f"({t}.sum + {x}.sum)"
    bp = f"({total} - {t}.sum)"
    err = f"(({t}.sum - ({total} - {bp})) + ({x}.sum - {bp}))"
    # A sum past +-SUM_LIMIT saturates there, tested before adding: SQLite would
    # make inf (and a NaN error term, stored as NULL), PostgreSQL raise on overflow.
    lim = repr(SUM_LIMIT)
    up = f"({t}.sum > 0 AND {x}.sum > {lim} - {t}.sum)"
    down = f"({t}.sum < 0 AND {x}.sum < -{lim} - {t}.sum)"
    return (
        f"ON CONFLICT (key, bucket) DO UPDATE SET "
        f'"min" = CASE WHEN {x}."min" < {t}."min" THEN {x}."min" ELSE {t}."min" END, '
        f'"max" = CASE WHEN {x}."max" > {t}."max" THEN {x}."max" ELSE {t}."max" END, '
        f'"sum" = CASE WHEN {up} THEN {lim} WHEN {down} THEN -{lim} ELSE {total} END, '
        f'"sum_c" = CASE WHEN {up} OR {down} THEN 0 ELSE {t}.sum_c + {x}.sum_c + {err} END, '
        f'"count" = {t}."count" + {x}."count"'
    )


def write_keys(conn: sa.Connection, new_keys: list[tuple[int, str, str, str]], copy_threshold: int = 100) -> None:
    """Insert rollup keys made since the last flush (a new site makes a
    million at once: 5,000 nodes x 200 series), as plain tuples or COPY."""
    if not new_keys:
        return
    if conn.dialect.name == "postgresql" and len(new_keys) >= copy_threshold:
        copy_rows(conn, S.rollup_keys, new_keys, "ON CONFLICT DO NOTHING")
        return
    mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    conn.exec_driver_sql(
        f"INSERT INTO rollup_keys (key, scope, entity, series) VALUES ({mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT DO NOTHING",
        new_keys,
    )


def write_rows(conn: sa.Connection, batches: list[RollupRows], copy_threshold: int) -> int:
    """Merge drained buckets into their tier tables; returns rows written."""
    backend = conn.dialect.name
    written = 0
    for rows in batches:
        table = S.rollups[rows.tier]
        cols = (rows.key, rows.bucket, rows.min, rows.max, rows.sum, rows.sum_c, rows.count)
        tuples = list(zip(*(c.tolist() for c in cols)))
        clause = _merge_clause(table.name)
        if backend == "postgresql" and len(tuples) >= copy_threshold:
            copy_rows(conn, table, tuples, clause)
        else:
            mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
            sql = (
                f'INSERT INTO "{table.name}" (key, bucket, "min", "max", "sum", "sum_c", "count") '
                f"VALUES ({', '.join([mark] * 7)}) {clause}"
            )
            conn.exec_driver_sql(sql, tuples)
        written += len(tuples)
    return written


def choose_tier(since: float, until: float, step: float | None, now: float, retention: dict[str, float]) -> str:
    """The tier to read ``[since, until]`` from: the coarsest whose bucket is
    no wider than ``step`` (default: range / TARGET_POINTS), moving coarser
    while the range starts before the tier's retention horizon."""
    if step is None:
        step = max(until - since, 1.0) / TARGET_POINTS
    names = ["raw"] + [name for name, _ in TIERS]
    widths = {"raw": 0, **TIER_WIDTH}
    pick = 0
    for i, name in enumerate(names):
        if widths[name] <= step:
            pick = i
    while pick < len(names) - 1 and since < now - retention[names[pick]]:
        pick += 1
    return names[pick]


def _keys(conn: sa.Connection, scope: str, series: str, entity: str | None = None) -> dict[int, str]:
    """Key ids of one series in one scope (of one entity), with their entity.

    Looked up first, on their own, so the tier table is then read through its
    primary key (key, bucket): joined in one statement, planners may walk the
    bucket index across every key of the range instead."""
    k = S.rollup_keys
    q = sa.select(k.c.key, k.c.entity).where(k.c.scope == scope, k.c.series == series)
    if entity is not None:
        q = q.where(k.c.entity == entity)
    return dict(conn.execute(q).all())


def points(
    conn: sa.Connection, tier: str, scope: str, entity: str, series: str, since: float, until: float
) -> list[dict[str, Any]]:
    """Buckets of one key overlapping ``[since, until]``, oldest first."""
    keys = _keys(conn, scope, series, entity)
    if not keys:
        return []
    r = S.rollups[tier]
    width = TIER_WIDTH[tier]
    q = (
        sa.select(r.c.bucket, r.c.min, r.c.max, r.c.sum, r.c.sum_c, r.c.count)
        .where(r.c.key == next(iter(keys)))
        .where(r.c.bucket > since - width, r.c.bucket <= until)
        .order_by(r.c.bucket)
    )
    return [_point(row) for row in conn.execute(q)]


def _point(row) -> dict[str, Any]:
    total = row.sum + row.sum_c
    return {"ts": float(row.bucket), "min": row.min, "max": row.max, "sum": total, "count": row.count,
            "avg": total / row.count}


def summary(
    conn: sa.Connection, tier: str, series: str, since: float, until: float, by: str
) -> dict[str, dict[str, Any]]:
    """Per entity of scope ``by`` ("cluster" or "aggregator"): the whole range's
    min/max/sum/count/avg and its buckets."""
    keys = _keys(conn, by, series)
    if not keys:
        return {}
    r = S.rollups[tier]
    width = TIER_WIDTH[tier]
    q = (
        sa.select(r.c.key, r.c.bucket, r.c.min, r.c.max, r.c.sum, r.c.sum_c, r.c.count)
        .where(r.c.key.in_(list(keys)))
        .where(r.c.bucket > since - width, r.c.bucket <= until)
        .order_by(r.c.key, r.c.bucket)
    )
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(q):
        p = _point(row)
        e = out.setdefault(keys[row.key], {"min": p["min"], "max": p["max"], "sum": 0.0, "count": 0, "points": []})
        e["min"], e["max"] = min(e["min"], p["min"]), max(e["max"], p["max"])
        e["sum"] += p["sum"]
        e["count"] += p["count"]
        e["points"].append(p)
    for e in out.values():
        e["avg"] = e["sum"] / e["count"]
    return dict(sorted(out.items()))
