"""``clumon cluster``, ``jobs``, ``job`` and ``report utilization``: the batch
schedulers as the root knows them."""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client

JOB_STATES = ("running", "pending", "suspended", "finished")
#: columns of ``report utilization --csv``, one row per cluster and period
CSV_COLUMNS = ("cluster", "period", "utilization", "occupancy", "power_on", "core_hours_used",
               "core_hours_total", "hours", "samples")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def moment(text: str) -> float:
    """A duration before now (``30d``) or a UTC date (``2026-11-01``): unix seconds or
    seconds ago, as the root's time arguments take them."""
    m = _DATE.match(text.strip())
    if m:
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=timezone.utc).timestamp()
        except (ValueError, OverflowError):
            pass
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}")
    return R.duration(text)


def month(text: str) -> str:
    if not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", text.strip()):
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM, got {text!r}")
    return text.strip()


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def cmd_cluster(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("cluster", cluster=a.name)
    if a.json:
        return result
    if not result:
        print("no scheduler figures yet: an agent with a [scheduler] table sends them", file=sys.stderr)
    for cl in result:
        state = "STALE (the scheduler does not answer)" if cl["stale"] else "fresh"
        title = f"cluster {cl['cluster']} from {cl['source']} ({R.age(cl['ts'])} ago, {state})"
        rows = []
        for part, f in sorted(cl["partitions"].items()):
            n, k, j, acc = f["nodes"], f["cores"], f["jobs"], f["accounts"]
            rows.append([part or "(all)", R.num(n.get("total")),
                         "/".join(R.num(n.get(s)) for s in ("busy", "idle", "reserved", "admin_down", "offline")),
                         f"{R.num(k.get('used'))}/{R.num(k.get('total'))}", R.num(k.get("requested")),
                         f"{R.num(j.get('running'))}/{R.num(j.get('pending'))}",
                         f"{R.num(acc.get('running'))}/{R.num(acc.get('pending'))}/{R.num(acc.get('total'))}",
                         _pct(f["utilization"]), _pct(f["occupancy"]), _pct(f["power_on"])])
        R.table(title, ["partition", "nodes", "busy/idle/resv/drain/off", "cores used/all", "requested",
                        "jobs run/pend", "accounts run/pend/all", "util", "occupancy", "power-on"], rows)
    return result


def cmd_jobs(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("jobs", cluster=a.cluster, user=a.user, account=a.account, state=a.state, node=a.node,
                    since=a.since, until=a.until, limit=a.limit)
    if not a.json:
        R.table(f"jobs ({len(result)})", ["cluster", "job", "user", "account", "partition", "state", "cores",
                                          "nodes", "submitted", "started", "ended"],
                [[j["cluster"], j["id"], j["user"], j["account"], j["partition"], _state(j), str(j["cores"]),
                  _nodes(j["nodes"]), R.since(j["submit_time"]), R.since(j["start_time"]), R.since(j["end_time"])]
                 for j in result])
    return result


def _state(j: dict) -> str:
    return j["state"] if j["raw_state"].lower() == j["state"] else f"{j['state']} ({j['raw_state']})"


def _nodes(names: list[str], most: int = 4) -> str:
    return ",".join(names[:most]) + (f" +{len(names) - most}" if len(names) > most else "")


def cmd_job(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("job", id=a.id, cluster=a.cluster)
    if a.json:
        return result
    j = result["job"]
    ran = (j["end_time"] or time.time()) - j["start_time"] if j["start_time"] else None
    R.table(f"job {j['id']} on cluster {j['cluster']}", ["field", "value"], [
        ["user / account", f"{j['user']} / {j['account']}"], ["partition", j["partition"]],
        ["state", _state(j)], ["cores", str(j["cores"])], ["nodes", ",".join(j["nodes"]) or "-"],
        ["submitted", R.when(j["submit_time"])], ["started", R.when(j["start_time"])],
        ["ended", R.when(j["end_time"])], ["ran", f"{ran / 3600:.2f} h" if ran is not None else "-"],
        ["core-hours", f"{j['cores'] * ran / 3600:.2f}" if ran is not None else "-"]])
    rows = []
    for node, series in result["nodes"].items():
        busy = _stats(series.get('node_cpu_ratio{mode="idle"}'), invert=True)
        load = _stats(series.get("node_load1"))
        mem = _stats(series.get("node_memory_used_ratio"))
        rows.append([node, *busy, *load, *mem])
    if rows:
        R.table("its nodes over its run (mean / max)", ["node", "cpu busy", "", "load1", "", "memory used", ""],
                [[r[0], _pct(r[1]), _pct(r[2]), R.num(_round(r[3])), R.num(_round(r[4])), _pct(r[5]), _pct(r[6])]
                 for r in rows])
    elif j["start_time"] is None:
        print("not started yet: no samples to show")
    if result["missing"]:
        print(f"not watched by clumon (no node of that name): {', '.join(result['missing'])}")
    return result


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _stats(got: dict | None, invert: bool = False) -> tuple[float | None, float | None]:
    """Mean and max of stored points (raw pairs or rollup buckets)."""
    if not got or not got.get("points"):
        return None, None
    pts = got["points"]
    if isinstance(pts[0], dict):
        total, count = sum(p["sum"] for p in pts), sum(p["count"] for p in pts)
        mean, top = (total / count if count else None), max(p["min" if invert else "max"] for p in pts)
    else:
        vals = [p[1] for p in pts if p[1] is not None]
        if not vals:
            return None, None
        mean, top = sum(vals) / len(vals), (min(vals) if invert else max(vals))
    if invert:
        return (None if mean is None else 1 - mean), 1 - top
    return mean, top


def cmd_report(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("utilization", cluster=a.cluster, month=a.month, since=a.since, until=a.until, by=a.by,
                    top=a.top)
    if a.json:
        return result
    if a.csv:
        w = csv.writer(sys.stdout)
        w.writerow(CSV_COLUMNS)
        for cl in result["clusters"]:
            for p in cl["periods"]:
                w.writerow([cl["cluster"], *(_csv(p[k]) for k in CSV_COLUMNS[1:])])
        return result
    span = f"{R.when(result['since'])} to {R.when(result['until'])}"
    for cl in result["clusters"]:
        R.table(f"cluster {cl['cluster']}: utilization by {result['by']}, {span} (tier {cl['tier']})",
                ["period", "utilization", "occupancy", "power-on", "core-h used", "core-h offered", "hours"],
                [[p["period"], _pct(p["utilization"]), _pct(p["occupancy"]), _pct(p["power_on"]),
                  _ch(p["core_hours_used"]), _ch(p["core_hours_total"]), f"{p['hours']:.1f}"]
                 for p in cl["periods"]])
    for by in ("user", "account"):
        R.table(f"core-hours by {by}", ["cluster", by, "core-hours", "jobs"],
                [[r["cluster"], r[by], _ch(r["core_hours"]), str(r["jobs"])] for r in result[f"{by}s"]])
    return result


def _ch(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _csv(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("cluster", parents=[common], help="batch clusters now: nodes, cores, jobs, utilization")
    s.add_argument("name", nargs="?", help="one cluster (default: all)")
    s = sub.add_parser("jobs", parents=[common], help="batch jobs, newest first")
    s.add_argument("--cluster")
    s.add_argument("--user")
    s.add_argument("--account")
    s.add_argument("--state", choices=JOB_STATES)
    s.add_argument("--node", help="jobs that ran on this node")
    s.add_argument("--since", type=moment, default=86400.0, help="jobs alive since (30m, 7d or YYYY-MM-DD)")
    s.add_argument("--until", type=moment, default=None, help="... and up to (default now)")
    s.add_argument("--limit", type=int, default=1000)
    s = sub.add_parser("job", parents=[common], help="one batch job and its nodes' samples over its run")
    s.add_argument("id")
    s.add_argument("--cluster", help="when several clusters have that job id")
    s = sub.add_parser("report", parents=[common], help="reports: utilization per day or month")
    s.add_argument("what", choices=["utilization"])
    s.add_argument("--cluster")
    span = s.add_mutually_exclusive_group()
    span.add_argument("--month", type=month, help="one month, YYYY-MM (UTC)")
    span.add_argument("--since", type=moment, default=None, help="start (30d or YYYY-MM-DD; default 30d)")
    s.add_argument("--until", type=moment, default=None, help="end (default now)")
    s.add_argument("--by", choices=["day", "month"], default="day")
    s.add_argument("--top", type=int, default=20, help="users and accounts listed")
    s.add_argument("--csv", action="store_true", help="the periods as CSV")
    return {"cluster": cmd_cluster, "jobs": cmd_jobs, "job": cmd_job, "report": cmd_report}
