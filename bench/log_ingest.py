"""Log watch at scale on this machine: ingest, the agent's cost, a day's grep.

One command, one JSON line (127.0.0.1 only, bounded in time: about 3 minutes):

* **ingest**: a real root (SQLite) and, in a process of its own, ``--nodes``
  simulated agents (the real ``Uplink`` and ``Spool``: numbered LOG frames,
  replayed until acknowledged) each writing ``--lines-per-s``/``--nodes`` lines a
  second of ~200 bytes, read every ``--poll`` seconds. ``lines_per_s`` is what
  the root stored a second, ``e2e_p99_s`` the 99th percentile from a line's
  write (the oldest of a poll: it waited a whole poll) to its ACK, which the root
  sends after the commit; ``loss`` the lines sent minus the lines in
  ``log_chunks`` once every ACK came.
* **agent**: two real agents on one root, the same config but one tails a file
  that a writer grows by 100 lines a second; ``agent_cpu_pct_delta`` is its CPU
  minus the other's (% of one core, from /proc/PID/task/*/schedstat, ns), the mean
  of ``--agent-rounds`` comparisons with fresh processes (each in
  ``agent_cpu_pct_delta_rounds``: a busy host moves one by ±0.01).
* **grep**: a day of ``--nodes`` nodes at ``--grep-rate`` lines a second each,
  written through the store's own write path (one commit a minute of the whole
  site), compacted, then a real root answers ``logs --grep`` over the day for a
  rare word; ``grep_day_s`` is the slowest of three answers, as the client saw it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from clumon.cli.client import Client
from clumon.cli.daemon import Daemon, free_port, run_ns, write_toml

LINE_BYTES = 200


def start_root(work: Path, label: str, db: Path) -> Daemon:
    port, qport = free_port(), free_port()
    cfg = write_toml(work / f"{label}.toml", {
        "listen": f"tcp://127.0.0.1:{port}", "query": f"tcp://127.0.0.1:{qport}", "metrics": "",
        "database": f"sqlite:///{db}", "state_dir": str(work / label), "log_level": "WARNING"})
    d = Daemon(label, [sys.executable, "-m", "clumon.root", "--config", str(cfg)], work / f"{label}.log")
    d.start()
    if not d.wait_ready(60):
        raise SystemExit(f"{label} did not start: {d.log_path.read_text()[-2000:]}")
    d.port, d.query = port, f"tcp://127.0.0.1:{qport}"
    return d


# --- ingest: simulated agents ------------------------------------------------------------


def _line(rnd: random.Random, name: str, n: int, t: float) -> str:
    head = f"{t:.6f} {name} app[{4000 + n % 97}]: req {n} user=u{rnd.randrange(500)} took {rnd.random() * 90:.3f}ms "
    return head + "k=" + "%016x" % rnd.getrandbits(64) + " " + "v" * max(0, LINE_BYTES - len(head) - 19)


async def simulate(parent: str, nodes: int, rate: float, poll: float, duration: float, out: Path) -> None:
    import zmq.asyncio
    from clumon.proto.frames import Hello, Log, LogFile
    from clumon.proto.spool import Spool
    from clumon.proto.uplink import LinkTimings, Uplink

    ctx = zmq.asyncio.Context()
    per_tick = max(1, round(rate / nodes * poll))
    lat: list[float] = []
    sims = []
    for i in range(nodes):
        name = f"lsim-{i:03d}"
        up = Uplink(ctx, name, time.time_ns(), (parent,), LinkTimings(1.0, 60.0, 30.0, 0.0),
                    Spool(1 << 30, 3600.0), lambda f: None)
        up.start_receiving()
        created: dict[int, float] = {}

        def acked(ranges, created=created):
            now = time.time()
            for lo, hi in ranges:
                for s in range(lo, hi + 1):
                    t = created.pop(s, None)
                    if t is not None:
                        lat.append(now - t)
        up.on_acked = acked
        up.send_stored(Hello(1, (), {"host": name}, "agent"))
        sims.append((name, up, created, random.Random(i), [0, 0]))  # offset, line number
    sent = 0
    ticks = 0
    t0 = time.monotonic()
    next_tick = t0
    last_link = t0
    while time.monotonic() - t0 < duration:
        now = time.time()
        for name, up, created, rnd, pos in sims:
            lines = [_line(rnd, name, pos[1] + k, now) for k in range(per_tick)]
            offsets = []
            for text in lines:
                offsets.append(pos[0])
                pos[0] += len(text) + 1
            pos[1] += per_tick
            seq = up.send_stored(Log((LogFile(1, "app", "/var/log/app.log", now, pos[0], tuple(offsets),
                                              tuple(lines)),)))
            created[seq] = now - poll  # its oldest line was written up to a poll earlier
            sent += per_tick
        if time.monotonic() - last_link >= 1.0:
            last_link = time.monotonic()
            for s in sims:
                s[1].tick()
        ticks += 1
        next_tick += poll
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(s[1].spool) for s in sims):
        for s in sims:
            s[1].tick()
        await asyncio.sleep(0.5)
    # each tick carries a poll's worth of lines: the rate is over ticks x poll seconds
    out.write_text(json.dumps({"sent": sent, "elapsed": ticks * poll, "lat": lat,
                               "unacked": sum(len(s[1].spool) for s in sims)}))
    for s in sims:
        s[1].close()
    ctx.term()


def ingest(work: Path, args) -> dict:
    db = work / "ingest.db"
    root = start_root(work, "root-ingest", db)
    try:
        res = work / "sim.json"
        c0, t0 = run_ns(root.proc.pid), time.monotonic()
        subprocess.run([sys.executable, __file__, "--sim", f"tcp://127.0.0.1:{root.port}", str(args.nodes),
                        str(args.lines_per_s), str(args.poll), str(args.duration), str(res)], check=True,
                       timeout=args.duration + 120)
        sim = json.loads(res.read_text())
        root_pct = 100.0 * (run_ns(root.proc.pid) - c0) / 1e9 / (time.monotonic() - t0)
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute("SELECT coalesce(sum(lines), 0) FROM log_chunks").fetchone()
        lat = sorted(sim["lat"])
        return {"lines_per_s": round(stored / sim["elapsed"]), "lines_sent": sim["sent"], "lines_stored": stored,
                "loss": sim["sent"] - stored, "unacked_at_end": sim["unacked"],
                "e2e_p50_s": round(statistics.median(lat), 3) if lat else None,
                "e2e_p99_s": round(lat[int(0.99 * (len(lat) - 1))], 3) if lat else None,
                "e2e_max_s": round(lat[-1], 3) if lat else None, "cpu_pct_root": round(root_pct, 1)}
    finally:
        root.stop()


# --- the agent's cost -----------------------------------------------------------------------


def agent_cost(work: Path, args) -> dict:
    root = start_root(work, "root-agents", work / "agents.db")
    logf = work / "logs" / "app.log"
    logf.parent.mkdir()
    logf.touch()
    agents = {}
    try:
        with_log = {"log": [{"path": str(logf), "source": "app"}], "log_poll_interval": args.agent_poll}
        for label, extra in (("with-log", with_log), ("baseline", {})):
            cfg = write_toml(work / f"{label}.toml", {
                "name": label, "parents": [f"tcp://127.0.0.1:{root.port}"], "state_dir": str(work / label),
                "interval": 1.0, "log_level": "WARNING", **extra})
            d = Daemon(label, [sys.executable, "-m", "clumon.agent", "--config", str(cfg)], work / f"{label}.log")
            d.start(dict(os.environ, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX="2"))
            if not d.wait_ready(60):
                raise SystemExit(f"{label} did not start: {d.log_path.read_text()[-2000:]}")
            agents[label] = d
        stop = threading.Event()
        written = [0]

        def write():  # 100 lines a second, ten at a time, as a busy daemon logs
            rnd = random.Random(7)
            with open(logf, "a", buffering=1) as fh:
                nxt = time.monotonic()
                while not stop.is_set():
                    fh.write("".join(_line(rnd, "node", written[0] + k, time.time()) + "\n" for k in range(10)))
                    written[0] += 10
                    nxt += 0.1
                    time.sleep(max(0.0, nxt - time.monotonic()))
        w = threading.Thread(target=write, daemon=True)
        if not args.agent_idle:
            w.start()
        time.sleep(args.agent_warmup)
        n0 = {k: run_ns(d.proc.pid) for k, d in agents.items()}
        t0 = time.monotonic()
        time.sleep(args.agent_duration)
        dt = time.monotonic() - t0
        n1 = {k: run_ns(d.proc.pid) for k, d in agents.items()}
        stop.set()
        if w.is_alive():
            w.join()
        pct = {k: 100.0 * (n1[k] - n0[k]) / 1e9 / dt for k in agents}
        return {"agent_cpu_pct_delta": round(pct["with-log"] - pct["baseline"], 4),
                "agent_cpu_pct_with_log": round(pct["with-log"], 4), "agent_cpu_pct_baseline": round(pct["baseline"], 4),
                "agent_lines_per_s": round(written[0] / (dt + args.agent_warmup), 1), "agent_poll_s": args.agent_poll}
    finally:
        for d in agents.values():
            d.stop()
        root.stop()


# --- a day's grep ----------------------------------------------------------------------------


RARE = "EDAC_MC0_UE_row42"


def fill_day(db: Path, nodes: int, rate: float) -> int:
    from clumon.proto.frames import LogFile
    from clumon.root.storage import LogRow, Store

    store = Store(f"sqlite:///{db}")
    rnd = random.Random(1)
    end = time.time()
    start = end - 86400
    per_min = max(1, round(rate * 60))
    total = 0
    offsets = [0] * nodes
    for m in range(1440):
        t = start + m * 60
        rows = []
        for i in range(nodes):
            name = f"node-{i:03d}"
            lines = []
            offs = []
            for k in range(per_min):
                text = _line(rnd, name, total + k, t + k * 60 / per_min)
                if rnd.random() < 2e-5:
                    text = text[:60] + RARE + text[60 + len(RARE):]
                lines.append(text)
                offs.append(offsets[i])
                offsets[i] += len(text) + 1
            total += per_min
            rows.append(LogRow(name, 1, m + 1, t, (LogFile(1, "messages", "/var/log/messages", t, offsets[i],
                                                             tuple(offs), tuple(lines)),)))
        store.write(rows)
    store.compact_logs(now=end + 3 * 3600)
    store.close()
    return total


def grep_day(work: Path, args) -> dict:
    db = work / "day.db"
    t0 = time.monotonic()
    lines = fill_day(db, args.nodes, args.grep_rate)
    fill_s = time.monotonic() - t0
    with sqlite3.connect(db) as conn:
        (chunks,) = conn.execute("SELECT count(*) FROM log_chunks").fetchone()
    root = start_root(work, "root-grep", db)
    try:
        times, found = [], 0
        with Client(root.query, timeout=60) as c:
            for _ in range(3):
                t = time.perf_counter()
                got = c.call("logs", grep=RARE, since=86400, limit=1000)
                times.append(time.perf_counter() - t)
                found = len(got["lines"])
            t = time.perf_counter()
            one = c.call("logs", node="node-007", grep="took 1\\.", since=86400, limit=1000)
            node_s = time.perf_counter() - t
        return {"grep_day_s": round(max(times), 3), "grep_day_s_runs": [round(x, 3) for x in times],
                "grep_day_lines": lines, "grep_day_matches": found, "grep_day_chunks": chunks,
                "grep_lines_per_node_s": args.grep_rate, "grep_day_db_mib": round(db.stat().st_size / 2**20, 1),
                "grep_day_fill_s": round(fill_s, 1), "grep_one_node_s": round(node_s, 3),
                "grep_one_node_lines": len(one["lines"])}
    finally:
        root.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sim":
        parent, nodes, rate, poll, duration, out = sys.argv[2:8]
        import uvloop
        uvloop.run(simulate(parent, int(nodes), float(rate), float(poll), float(duration), Path(out)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--lines-per-s", type=float, default=50_000.0, help="all simulated nodes together")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between an agent's reads (its default)")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--agent-warmup", type=float, default=10.0)
    ap.add_argument("--agent-duration", type=float, default=60.0)
    ap.add_argument("--agent-rounds", type=int, default=2, help="agent comparisons (fresh processes each); the mean")
    ap.add_argument("--agent-poll", type=float, default=2.0, help="the tailing agent's log_poll_interval (default 2)")
    ap.add_argument("--agent-idle", action="store_true", help="the tailed file does not grow (the fixed cost)")
    ap.add_argument("--grep-rate", type=float, default=1.0, help="lines a second per node for the day's grep")
    ap.add_argument("--only", choices=["ingest", "agent", "grep"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["ingest", "agent", "grep"])
    out = {"bench": "log_ingest", "host_cores": os.cpu_count(), "python": platform.python_version(),
           "machine": platform.machine(), "nodes": args.nodes, "line_bytes": LINE_BYTES}
    with tempfile.TemporaryDirectory(prefix="clumon-logbench-") as tmp:
        work = Path(tmp)
        if "ingest" in only:
            (work / "i").mkdir()
            out.update(ingest(work / "i", args))
        if "agent" in only:
            rounds = []
            for r in range(max(1, args.agent_rounds)):
                (work / f"a{r}").mkdir()
                rounds.append(agent_cost(work / f"a{r}", args))
            out.update(rounds[-1])
            for key in ("agent_cpu_pct_delta", "agent_cpu_pct_with_log", "agent_cpu_pct_baseline"):
                out[key] = round(statistics.mean(x[key] for x in rounds), 4)
            out["agent_cpu_pct_delta_rounds"] = [x["agent_cpu_pct_delta"] for x in rounds]
        if "grep" in only:
            (work / "g").mkdir()
            out.update(grep_day(work / "g", args))
    out["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
