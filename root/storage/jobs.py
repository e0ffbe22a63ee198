"""Batch jobs in SQL: written from ``sched_jobs`` EVENTs, read by the job ops.

The scheduler source (``agent/scheduler/jobs.py``) sends what changed at each
poll and, now and then, every job listed (``sync``). Rows are written in the
same transaction as the frames that carried them, so an ACK still means
stored. A row is only replaced by news at least as recent (``last_seen``): a
replayed old event is a no-op. After the last event of a sync, the jobs of its
cluster that it did not mention and that are not finished are ended as
``GONE`` at that poll (they left the listing while nobody was watching).

Core-hours count each job's cores over the part of its run inside the period
asked for; a job still running counts up to now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from . import schema as S
from .rows import EventRow

EVENT = "sched_jobs"
#: the order of a job's fields in an event (agent/scheduler/jobs.py FIELDS)
FIELDS = ("id", "user", "account", "partition", "state", "raw_state", "nodes", "cores",
          "submit_time", "start_time", "end_time")
FINISHED = "finished"
JOB_STATES = ("running", "pending", "suspended", "finished")


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _time(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _row(job: Any, cluster: str, polled: float, source: str) -> dict | None:
    """One job list as a row, or None when it is not one (a newer agent's shape we
    cannot read is skipped rather than failing the batch it came in)."""
    if not isinstance(job, (list, tuple)) or len(job) < len(FIELDS) or not _text(job[0]):
        return None
    state = _text(job[4])
    cores = job[7] if isinstance(job[7], int) and not isinstance(job[7], bool) else 0
    return {"cluster": cluster, "id": _text(job[0]), "user": _text(job[1]), "account": _text(job[2]),
            "partition": _text(job[3]), "state": state if state in JOB_STATES else FINISHED,
            "raw_state": _text(job[5]), "nodes": _text(job[6]), "cores": max(0, min(cores, 2**31 - 1)),
            "submit_time": _time(job[8]), "start_time": _time(job[9]), "end_time": _time(job[10]),
            "first_seen": polled, "last_seen": polled, "source": source}


@dataclass(frozen=True, slots=True)
class Sync:
    """The end of a sync: jobs of ``cluster`` not seen since ``polled`` are gone."""

    cluster: str
    polled: float


def rows_of(events: Iterable[EventRow]) -> tuple[list[dict], list[Sync]]:
    """The job rows (the newest of each job) and the syncs the events carry."""
    latest: dict[tuple[str, str], dict] = {}
    syncs: list[Sync] = []
    for e in events:
        a = e.attrs if isinstance(e.attrs, dict) else {}
        cluster = _text(a.get("cluster"))
        polled = _time(a.get("polled")) or e.ts
        jobs = a.get("jobs")
        if not cluster or not isinstance(jobs, list):
            continue
        for job in jobs:
            row = _row(job, cluster, polled, e.source)
            if row is None:
                continue
            key = (cluster, row["id"])
            old = latest.get(key)
            if old is None or old["last_seen"] <= polled:
                latest[key] = row
        if a.get("sync") and a.get("last"):
            syncs.append(Sync(cluster, polled))
    return list(latest.values()), syncs


def slim(e: EventRow) -> EventRow:
    """The event as the events table keeps it: the job list is in ``jobs`` (and
    in the frame's own bytes), so only its count stays in the attrs."""
    attrs = dict(e.attrs) if isinstance(e.attrs, dict) else {}
    jobs = attrs.pop("jobs", None)
    attrs["count"] = len(jobs) if isinstance(jobs, list) else 0
    return EventRow(e.ts, e.subject, e.type, e.message, attrs, e.source, e.source_incarnation, e.source_seq)


def write(conn: sa.Connection, insert: Callable[[sa.Table], Any], events: list[EventRow]) -> int:
    """Upsert the jobs the events carry and apply their syncs; returns the rows sent."""
    rows, syncs = rows_of(events)
    t = S.jobs
    if rows:
        stmt = insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.cluster, t.c.id],
            set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name not in ("cluster", "id", "first_seen")},
            where=t.c.last_seen <= stmt.excluded.last_seen,
        )
        conn.execute(stmt, rows)
    for s in syncs:
        conn.execute(t.update().where(t.c.cluster == s.cluster, t.c.state != FINISHED, t.c.last_seen < s.polled)
                     .values(state=FINISHED, raw_state="GONE", last_seen=s.polled,
                             end_time=sa.func.coalesce(t.c.end_time, s.polled)))
    return len(rows)


# --- reads ----------------------------------------------------------------------------


def _dict(r: sa.Row) -> dict:
    d = dict(r._mapping)
    d["nodes"] = [n for n in d["nodes"].split(",") if n]
    return d


def select(conn: sa.Connection, *, cluster: str | None = None, user: str | None = None,
           account: str | None = None, state: str | None = None, node: str | None = None,
           since: float | None = None, until: float | None = None, limit: int = 1000) -> list[dict]:
    """Jobs newest first (by submit time); ``since``/``until`` keep the jobs whose
    run (or wait, for jobs not started) overlaps that period."""
    t = S.jobs
    q = sa.select(t)
    if cluster:
        q = q.where(t.c.cluster == cluster)
    if user:
        q = q.where(t.c.user == user)
    if account:
        q = q.where(t.c.account == account)
    if state:
        q = q.where(t.c.state == state)
    if node:
        q = q.where(sa.or_(t.c.nodes == node, t.c.nodes.like(f"{node},%"), t.c.nodes.like(f"%,{node}"),
                           t.c.nodes.like(f"%,{node},%")))
    begun = sa.func.coalesce(t.c.start_time, t.c.submit_time, t.c.first_seen)
    if since is not None:
        q = q.where(sa.or_(t.c.end_time.is_(None), t.c.end_time >= since))
    if until is not None:
        q = q.where(begun <= until)
    q = q.order_by(sa.func.coalesce(t.c.submit_time, t.c.first_seen).desc(), t.c.id.desc()).limit(limit)
    return [_dict(r) for r in conn.execute(q)]


def one(conn: sa.Connection, job_id: str, cluster: str | None = None) -> list[dict]:
    """The rows of one job id (one per cluster that has it)."""
    t = S.jobs
    q = sa.select(t).where(t.c.id == job_id)
    if cluster:
        q = q.where(t.c.cluster == cluster)
    return [_dict(r) for r in conn.execute(q.order_by(t.c.cluster))]


def _least(a, b):
    return sa.case((a < b, a), else_=b)


def _greatest(a, b):
    return sa.case((a > b, a), else_=b)


def core_hours(conn: sa.Connection, since: float, until: float, by: str, cluster: str | None = None,
               now: float | None = None, limit: int = 1000) -> list[dict]:
    """Core-hours of jobs that ran in ``[since, until)``, per ``by`` (user or account),
    most first: each job's cores times the part of its run inside the period."""
    if by not in ("user", "account"):
        raise ValueError(f"by: expected user or account, got {by!r}")
    now = time.time() if now is None else now
    t = S.jobs
    end = sa.func.coalesce(t.c.end_time, sa.literal(now, sa.Float(precision=53)))
    lo = _greatest(t.c.start_time, sa.literal(since, sa.Float(precision=53)))
    hi = _least(end, sa.literal(min(until, now), sa.Float(precision=53)))
    span = hi - lo
    seconds = sa.func.sum(sa.case((span > 0, t.c.cores * span), else_=0.0))
    who = t.c.user if by == "user" else t.c.account
    q = (sa.select(t.c.cluster, who.label("who"), seconds.label("core_seconds"), sa.func.count().label("jobs"))
         .where(t.c.start_time.is_not(None), t.c.start_time < until, sa.or_(t.c.end_time.is_(None), t.c.end_time > since))
         .group_by(t.c.cluster, who))
    if cluster:
        q = q.where(t.c.cluster == cluster)
    out = [{"cluster": r.cluster, by: r.who, "core_hours": float(r.core_seconds or 0.0) / 3600.0, "jobs": r.jobs}
           for r in conn.execute(q)]
    out.sort(key=lambda d: (-d["core_hours"], d["cluster"], d[by]))
    return out[:limit]


def clusters(conn: sa.Connection) -> list[str]:
    """The clusters that have jobs stored."""
    t = S.jobs
    return [r[0] for r in conn.execute(sa.select(t.c.cluster).distinct().order_by(t.c.cluster))]
