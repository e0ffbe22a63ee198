"""The CAS platform's daily and monthly tables: utilization, node occupancy and
power-on rate of a cluster per day or month, from the rollups of its
``sched_*`` series, with core-hours from the jobs table.

A period's ratio is the mean of the figures the scheduler source sent in it
(sum over count of the rollup buckets). The source sends every poll (its
interval, 30 s, is within the agent's ``max_silence``), so that mean is the
time-weighted one. Core-hours used and offered are the mean cores
used and of all nodes times the span from the period's first to its last
sample (a gap inside the period counts at the mean).
Days and months are UTC, as the rollup buckets are.

The tier read is the finest whose retention still covers the start of the
period (1-minute buckets for the last 30 days by default, then 30-minute,
2-hour, daily).
"""

from __future__ import annotations

import calendar
import time
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from . import jobs
from . import schema as S
from .rollup import TIER_WIDTH, TIERS

DAY = 86400.0
RATIOS = {"utilization": "sched_utilization_ratio", "occupancy": "sched_occupancy_ratio",
          "power_on": "sched_power_on_ratio"}
CORES = {"cores_used": ("sched_cores", "used"), "cores_total": ("sched_cores", "total")}


def _name(metric: str, cluster: str, state: str | None = None) -> str:
    esc = cluster.replace("\\", "\\\\").replace('"', '\\"')
    labels = f'cluster="{esc}",partition=""' + (f',state="{state}"' if state else "")
    return f"{metric}{{{labels}}}"


def month_range(month: str) -> tuple[float, float]:
    """``YYYY-MM`` as [first second, first second of the next month) in UTC."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        if not 1 <= mon <= 12 or not 1970 <= year <= 9999:
            raise ValueError
    except ValueError:
        raise ValueError(f"month: expected YYYY-MM, got {month!r}") from None
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    end = calendar.timegm((year + mon // 12, mon % 12 + 1, 1, 0, 0, 0))
    return float(start), float(end)


def period_of(ts: float, by: str) -> str:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.strftime("%Y-%m-%d" if by == "day" else "%Y-%m")


def tier_for(since: float, now: float, retention: dict[str, float]) -> str:
    """The finest rollup tier whose retention reaches back to ``since``."""
    for name, _ in TIERS:
        if since >= now - retention.get(name, float("inf")):
            return name
    return TIERS[-1][0]


def clusters(conn: sa.Connection) -> list[str]:
    """Clusters with stored figures or jobs."""
    k = S.rollup_keys
    prefix = 'sched_utilization_ratio{cluster="'
    names = conn.execute(sa.select(k.c.series).where(k.c.scope == "cluster", k.c.series.like(prefix + "%"),
                                                     k.c.series.like('%,partition=""}'))).scalars()
    found = {n[len(prefix):-len('",partition=""}')].replace('\\"', '"').replace("\\\\", "\\") for n in names}
    return sorted(found | set(jobs.clusters(conn)))


def _buckets(conn: sa.Connection, tier: str, series: str, since: float, until: float) -> list[tuple[int, float, int]]:
    k, r = S.rollup_keys, S.rollups[tier]
    key = conn.execute(sa.select(k.c.key).where(k.c.scope == "cluster", k.c.entity == "", k.c.series == series)).scalar()
    if key is None:
        return []
    q = (sa.select(r.c.bucket, r.c.sum + r.c.sum_c, r.c.count)
         .where(r.c.key == key, r.c.bucket >= since - TIER_WIDTH[tier] + 1, r.c.bucket < until).order_by(r.c.bucket))
    return [(int(b), float(s), int(c)) for b, s, c in conn.execute(q)]


def report(conn: sa.Connection, cluster: str, since: float, until: float, by: str,
           retention: dict[str, float], now: float | None = None) -> dict[str, Any]:
    """One cluster's periods (``by`` day or month) between ``since`` and ``until``."""
    if by not in ("day", "month"):
        raise ValueError(f"by: expected day or month, got {by!r}")
    now = time.time() if now is None else now
    tier = tier_for(since, now, retention)
    width = TIER_WIDTH[tier]
    periods: dict[str, dict[str, Any]] = {}

    def period(bucket: int) -> dict[str, Any]:
        key = period_of(max(bucket, since), by)
        p = periods.get(key)
        if p is None:
            p = periods[key] = {"period": key, "samples": 0, "first": None, "last": None, "sums": {}}
        return p

    for field, metric in {**RATIOS, **{k: _name(m, cluster, st) for k, (m, st) in CORES.items()}}.items():
        name = _name(metric, cluster) if field in RATIOS else metric
        for bucket, total, count in _buckets(conn, tier, name, since, until):
            p = period(bucket)
            s = p["sums"].setdefault(field, [0.0, 0])
            s[0] += total
            s[1] += count
            if field == "utilization":
                p["samples"] += count
                start, end = max(bucket, since), min(bucket + width, until, now)
                p["first"] = start if p["first"] is None else min(p["first"], start)
                p["last"] = end if p["last"] is None else max(p["last"], end)
    return {"cluster": cluster, "since": since, "until": until, "by": by, "tier": tier,
            "periods": [_row(periods[key]) for key in sorted(periods)]}


def _row(p: dict[str, Any]) -> dict[str, Any]:
    """One period's figures: means of what was sent, core-hours over the span
    from its first to its last sample (gaps inside count at the mean)."""
    mean = {f: (s[0] / s[1] if s[1] else None) for f, s in p["sums"].items()}
    hours = max(0.0, (p["last"] or 0.0) - (p["first"] or 0.0)) / 3600.0
    row: dict[str, Any] = {"period": p["period"], "samples": p["samples"], "hours": hours}
    row.update({f: mean.get(f) for f in RATIOS})
    for f in CORES:
        row[f.replace("cores_", "core_hours_")] = mean[f] * hours if mean.get(f) is not None else None
    return row
