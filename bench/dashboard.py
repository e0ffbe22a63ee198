"""The dashboard's figures on a simulated 2,000-node site (issue 18's budgets).

One command, one JSON line:

* ``overview_ms``: ``GET /api/v1/overview`` (what the overview page polls every
  2 s) answered by a root with ``--nodes`` live simulated nodes (``clumon
  simulate`` under ``--aggregators`` aggregators, real daemons, real SQLite), the
  median of ``--rounds`` requests on one keep-alive connection, timed at the client
  (``overview_p95_ms`` beside it). Budget 100 ms.
* ``node_month_ms``: ``GET /api/v1/series`` of one node's series over the last 30
  days, asked as the node page asks (``step`` = range / 1,000 px), so the root
  reads the 30-minute rollups (``node_month_tier``, ``node_month_points``). The
  month is written before the root starts, through the store's own write path
  (one DATA frame a minute for 30 days, rolled up as ingest rolls them up). Budget
  150 ms.
* ``assets_kb``: what a browser transfers for a page, gzipped as served (the page
  shell, ``app.js``, ``app.css``), in KB. Budget 300 KB.

Simulated nodes (``clumon simulate --node-series``) carry four of their gauges
under the agent's names (CPU idle and iowait, memory used, load1), so the
overview ranks every node for its hottest lists (``overview_hottest`` says how
many it listed) besides walking every node and reading the recent events. ``cpu_pct_others`` says
how busy the box was with processes this bench did not start. Bounded: every wait
has a timeout and everything started is stopped. A quick run::

    python bench/dashboard.py --nodes 200 --rounds 10
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clumon.cli.daemon import Daemon, free_port

BUDGETS = {"overview_ms": 100.0, "node_month_ms": 150.0, "assets_kb": 300.0}
MONTH = 30 * 86400.0
NODE, SERIES = "sim-0", "sim_gauge_0000_ratio"
#: frames per write: few of one node per batch, as ingest sees them (rollups rank repeats of a key)
BATCH = 10


def fill_month(db: Path, now: float) -> int:
    """A month of one series of ``NODE`` (one frame a minute), through ``Store.write``."""
    from clumon.proto import codec
    from clumon.proto.frames import Data, Hello, Kind, make
    from clumon.root.storage import DictionaryRow, FrameRow, NodeRow, Store

    inc = int((now - MONTH - 3600) * 1e9)
    start = now - MONTH - 600
    store = Store(f"sqlite:///{db}")
    raw = codec.encode(make(NODE, inc, start, Hello(1, (SERIES,)), seq=0))
    store.write([FrameRow(NODE, inc, 0, start, int(Kind.HELLO), 1, raw)],
                [DictionaryRow(NODE, inc, 1, (SERIES,), {}, "agent")], [],
                [NodeRow(NODE, "agg-1", "agg-1", "agent", "up", start, inc, start, {})])
    frames, seq, ts = [], 1, start
    while ts < now - 120:
        value = 0.5 + 0.4 * ((seq % 1440) / 1440.0)
        raw = codec.encode(make(NODE, inc, ts, Data.from_values(1, [value]), seq=seq))
        frames.append(FrameRow(NODE, inc, seq, ts, int(Kind.DATA), 1, raw))
        seq, ts = seq + 1, ts + 60.0
        if len(frames) >= BATCH:
            store.write(frames)
            frames = []
    if frames:
        store.write(frames)
    store.flush()
    store.close()
    return seq - 1


def cpu_ticks(pids: set[int]) -> tuple[int, int]:
    """(ticks of ``pids``, ticks of the whole machine) so far."""
    ours = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ours += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except OSError:
            pass
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return ours, sum(cpu) - cpu[3] - cpu[4]


def get(conn: http.client.HTTPConnection, path: str, gz: bool = False) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gz else {})
    r = conn.getresponse()
    body = r.read()
    return r.status, body, (time.perf_counter() - t0) * 1000.0


def timed(conn, path: str, rounds: int) -> tuple[list[float], dict]:
    times, last = [], None
    for _ in range(rounds):
        status, body, ms = get(conn, path)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {body[:300]!r}")
        times.append(ms)
        last = json.loads(body)["result"]
    return times, last


def assets(conn) -> float:
    """KB a browser transfers for one page, as served (gzip where the server sends it)."""
    total = 0
    status, body, _ = get(conn, "/")
    total += len(body)
    html = body.decode()
    for path in ("/static/app.js", "/static/app.css"):
        assert path in html, path
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status}")
        if r.getheader("Content-Encoding") != "gzip":
            body = gzip.compress(body)  # count it as gzip would send it, and say so
        total += len(body)
    return total / 1024.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def run(args: argparse.Namespace, workdir: Path) -> dict:
    py = sys.executable
    db = workdir / "clumon.db"
    now = time.time()
    t0 = time.perf_counter()
    frames = fill_month(db, now)
    fill_s = time.perf_counter() - t0
    port, qport, hport = free_port(), free_port(), free_port()
    started: list[Daemon] = []

    def start(label: str, argv: list[str]) -> Daemon:
        d = Daemon(label, argv, workdir / f"{label}.log").start()
        started.append(d)
        return d

    try:
        root = start("root", [py, "-m", "clumon.root", "--listen", f"tcp://127.0.0.1:{port}",
                              "--query", f"tcp://127.0.0.1:{qport}", "--http", f"127.0.0.1:{hport}",
                              "--database", f"sqlite:///{db}", "--state-dir", str(workdir / "root")])
        if not root.wait_ready(60):
            raise RuntimeError(f"root not ready; see {root.log_path}")
        aggs, sims = [], []
        for a in range(args.aggregators):
            ap = free_port()
            agg = start(f"agg-{a + 1}", [py, "-m", "clumon.aggregator", "--name", f"agg-{a + 1}",
                                         "--listen", f"tcp://127.0.0.1:{ap}", "--parent", f"tcp://127.0.0.1:{port}",
                                         "--state-dir", str(workdir / f"agg-{a + 1}")])
            aggs.append((agg, ap))
        for agg, _ in aggs:
            if not agg.wait_ready(60):
                raise RuntimeError(f"{agg.label} not ready; see {agg.log_path}")
        for a, (_, ap) in enumerate(aggs):
            lo, hi = args.nodes * a // len(aggs), args.nodes * (a + 1) // len(aggs)
            sims.append(start(f"sim-{a + 1}", [py, "-m", "clumon.cli", "simulate", "--agents", str(hi - lo),
                                               "--first", str(lo), "--series", str(args.series),
                                               "--interval", str(args.interval), "--processes", "1",
                                               "--node-series",
                                               "--parent", f"tcp://127.0.0.1:{ap}"]))
        for sim in sims:
            if not sim.wait_ready(120):
                raise RuntimeError(f"{sim.label} not ready; see {sim.log_path}")
        conn = http.client.HTTPConnection("127.0.0.1", hport, timeout=30)
        deadline = time.monotonic() + max(120.0, args.nodes / 20)
        while True:
            _, o = timed(conn, "/api/v1/overview", 1)
            if o["states"].get("up", 0) >= args.nodes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {o['states']} of {args.nodes} nodes up")
            time.sleep(1.0)
        time.sleep(args.warmup)
        pids = {d.proc.pid for d in started}
        c0 = cpu_ticks(pids)
        w0 = time.monotonic()
        over, o = timed(conn, "/api/v1/overview", args.rounds)
        month_path = f"/api/v1/series?node={NODE}&series={SERIES}&since=30d&step={MONTH / 1000:.0f}"
        month, m = timed(conn, month_path, args.rounds)
        c1 = cpu_ticks(pids)
        dt = time.monotonic() - w0
        kb = assets(conn)
        conn.close()
    finally:
        for d in reversed(started):
            d.stop(timeout=30)
    clk = os.sysconf("SC_CLK_TCK")
    others = max(0.0, ((c1[1] - c0[1]) - (c1[0] - c0[0])) / clk / dt * 100.0) if dt > 0 else None
    return {
        "overview_ms": round(statistics.median(over), 2), "overview_p95_ms": round(pct(over, 95), 2),
        "overview_nodes_up": o["states"].get("up", 0),
        "overview_hottest": len(o.get("hottest_cpu") or []),
        "node_month_ms": round(statistics.median(month), 2), "node_month_p95_ms": round(pct(month, 95), 2),
        "node_month_tier": m["tier"], "node_month_points": len(m["points"]),
        "assets_kb": round(kb, 1),
        "nodes": args.nodes, "aggregators": args.aggregators, "series": args.series, "interval_s": args.interval,
        "rounds": args.rounds, "month_frames_written": frames, "month_fill_s": round(fill_s, 1),
        "cpu_pct_others": None if others is None else round(others, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2000)
    p.add_argument("--aggregators", type=int, default=2)
    p.add_argument("--series", type=int, default=20, help="series per simulated node")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a simulated node's frames")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=float, default=5.0)
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="clumon-bench-dashboard-"))
    try:
        result = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {"bench": "dashboard", **result,
           "within_budget": all(result[k] <= v for k, v in BUDGETS.items()), "budgets": BUDGETS,
           "host_cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
           "loadavg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
