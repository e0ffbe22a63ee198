"""Ops over the batch schedulers: ``cluster`` (the CAS figures now), ``jobs``,
``job`` (a job and its nodes' samples over its run) and ``utilization``
(the daily and monthly tables, core-hours by user and account)."""

from __future__ import annotations

import asyncio
import time

from clumon.proto.seriesname import parse
from clumon.proto.tree import LatestCache
from clumon.root.ops.base import OWN_SCOPE, SITE_SCOPE, Op, QueryError, arg, time_arg
from clumon.root.registry import Registry
from clumon.root.storage import Store
from clumon.root.storage.jobs import JOB_STATES
from clumon.root.storage.utilization import month_range

#: the figures kept per state, and the ratios
_COUNTED = {"sched_nodes": "nodes", "sched_cores": "cores", "sched_jobs": "jobs", "sched_accounts": "accounts"}
_RATIOS = {"sched_utilization_ratio": "utilization", "sched_occupancy_ratio": "occupancy",
           "sched_power_on_ratio": "power_on"}
#: what ``job`` shows of each of the job's nodes
JOB_SERIES = ('node_cpu_ratio{mode="idle"}', "node_load1", "node_memory_used_ratio")
#: at most this many of a job's nodes get their samples in one answer
JOB_NODES_MAX = 64


async def _in_executor(fn):
    return await asyncio.get_running_loop().run_in_executor(None, fn)


class SchedOps:
    """``cluster``, ``jobs``, ``job`` and ``utilization``."""

    def __init__(self, registry: Registry, cache: LatestCache, store: Store):
        self.registry = registry
        self.cache = cache
        self.store = store

    def ops(self) -> list[Op]:
        return [Op("cluster", self.cluster, scope=SITE_SCOPE), Op("jobs", self.jobs, scope=OWN_SCOPE),
                Op("job", self.job, scope=OWN_SCOPE), Op("utilization", self.utilization, scope=SITE_SCOPE)]

    # --- the figures now ------------------------------------------------------------

    async def cluster(self, args: dict) -> list[dict]:
        """Each cluster's latest figures, per partition (``""`` = the whole cluster),
        from the node whose scheduler source sent them most recently."""
        want = arg(args, "cluster", str, None)
        found: dict[str, dict] = {}
        for node in list(self.registry.nodes):
            by_cluster: dict[str, dict] = {}
            latest = self.cache.latest(node)
            for name, (value, ts) in latest.items():
                if not name.startswith("sched_"):
                    continue
                parsed = parse(name)
                if parsed is None or "cluster" not in parsed[1]:
                    continue
                metric, labels = parsed
                c = labels["cluster"]
                entry = by_cluster.setdefault(c, {"cluster": c, "source": node, "ts": 0.0, "stale": False,
                                                  "errors": 0, "partitions": {}})
                entry["ts"] = max(entry["ts"], ts)
                if metric == "sched_stale":
                    entry["stale"] = bool(value)
                    continue
                part = entry["partitions"].setdefault(labels.get("partition", ""), {
                    **{k: {} for k in _COUNTED.values()}, **dict.fromkeys(_RATIOS.values())})
                if metric in _COUNTED and "state" in labels:
                    part[_COUNTED[metric]][labels["state"]] = value
                elif metric in _RATIOS:
                    part[_RATIOS[metric]] = value
            for c, entry in by_cluster.items():
                errors = latest.get(f'clumon_sched_errors_total{{cluster="{_esc(c)}"}}')
                entry["errors"] = int(errors[0]) if errors and errors[0] is not None else 0
                entry["source_state"] = self.registry.nodes[node].state if node in self.registry.nodes else "unknown"
                if c not in found or entry["ts"] > found[c]["ts"]:
                    found[c] = entry
        if want is None:
            return [found[c] for c in sorted(found)]
        if want not in found:
            known = ", ".join(sorted(found)) or "none yet"
            raise QueryError("unknown_cluster", f"no scheduler figures for cluster {want!r} (clusters: {known})")
        return [found[want]]

    # --- jobs ------------------------------------------------------------------------

    async def jobs(self, args: dict) -> list[dict]:
        """Stored jobs, newest first: of a cluster, user, account, state or node, and
        overlapping ``since``..``until`` (default: the last day)."""
        filters = {
            "cluster": arg(args, "cluster", str, None), "user": arg(args, "user", str, None),
            "account": arg(args, "account", str, None), "node": arg(args, "node", str, None),
            "state": arg(args, "state", str, None, check=lambda v: v in JOB_STATES),
            "since": time_arg(args, "since", 86400.0), "until": time_arg(args, "until", 0.0),
            "limit": arg(args, "limit", int, 1000, check=lambda v: 0 < v <= 100_000),
        }
        return await _in_executor(lambda: self.store.jobs(**filters))

    async def job(self, args: dict) -> dict:
        """One job and, for each of its nodes, ``JOB_SERIES`` over its run (from the
        storage tier that covers it)."""
        job_id = arg(args, "id", str, check=bool)
        cluster = arg(args, "cluster", str, None)
        rows = await _in_executor(lambda: self.store.job(job_id, cluster))
        if not rows:
            raise QueryError("unknown_job", f"no job {job_id!r}" + (f" in cluster {cluster!r}" if cluster else ""))
        if len(rows) > 1:
            names = ", ".join(r["cluster"] for r in rows)
            raise QueryError("ambiguous_job", f"job {job_id!r} is in several clusters ({names}): give --cluster")
        job = rows[0]
        start = job["start_time"]
        if start is None:
            return {"job": job, "nodes": {}, "missing": []}
        until = job["end_time"] or time.time()
        shown, missing = {}, []
        for node in job["nodes"][:JOB_NODES_MAX]:
            name = self._clumon_name(node)
            if name is None:
                missing.append(node)
                continue
            shown[node] = await _in_executor(lambda n=name: {
                s: self.store.series(n, s, start, until) for s in JOB_SERIES})
        return {"job": job, "nodes": shown, "missing": missing, "truncated": len(job["nodes"]) > JOB_NODES_MAX}

    def _clumon_name(self, node: str) -> str | None:
        """The clumon node a scheduler's node name means: the same name, or the
        one whose short host name it is."""
        if node in self.registry.nodes:
            return node
        for name in self.registry.nodes:
            if name.split(".", 1)[0] == node:
                return name
        return None

    # --- reports ---------------------------------------------------------------------

    async def utilization(self, args: dict) -> dict:
        """Per day or month: utilization, occupancy and power-on rate of each cluster
        (or the one asked for), with core-hours; and core-hours by user and account."""
        cluster = arg(args, "cluster", str, None)
        by = arg(args, "by", str, "day", check=lambda v: v in ("day", "month"))
        month = arg(args, "month", str, None)
        if month is not None:
            try:
                since, until = month_range(month)
            except ValueError as exc:
                raise QueryError("bad_args", str(exc)) from None
        else:
            since = time_arg(args, "since", 30 * 86400.0)
            until = time_arg(args, "until", 0.0)
        if until <= since:
            raise QueryError("bad_args", "until must be after since")
        top = arg(args, "top", int, 20, check=lambda v: 0 < v <= 10_000)

        def work() -> dict:
            known = self.store.sched_clusters()
            if cluster is not None and cluster not in known:
                raise QueryError("unknown_cluster", f"no stored figures or jobs for cluster {cluster!r} "
                                                    f"(clusters: {', '.join(known) or 'none yet'})")
            names = [cluster] if cluster is not None else known
            return {"since": since, "until": until, "by": by,
                    "clusters": [self.store.utilization(c, since, until, by) for c in names],
                    "users": self.store.core_hours(since, until, "user", cluster)[:top],
                    "accounts": self.store.core_hours(since, until, "account", cluster)[:top]}

        return await _in_executor(work)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
