"""A whole tree at scale on this machine: root (SQLite) + aggregators + ``clumon simulate``.

Prints one JSON line per size with DESIGN.md's keys:

* ``samples_per_s``: values the root ingested per second over the measured window;
* ``loss``: frames the simulator numbered (HELLO/DATA/EVENT, its final
  ``frames_sent``) minus distinct ``(node, incarnation, seq)`` of simulated nodes in
  the SQLite file, counted after every process has stopped;
* ``e2e_p50_s`` / ``e2e_p99_s``: **end-to-end ack latency** — from the moment a
  simulated agent created a frame to the moment the root's ACK for it (sent only
  after the commit) arrived back at that agent, through every tier both ways.
  That is stricter than "commit time minus frame ts": it adds the trip of the
  ACK down the tree. Recorded by the simulator (1 ms buckets) over the window only;
* ``read_p50_ms`` / ``read_p99_ms``: ``read`` of one random simulated node with
  ``max_age=0``, timed at the client: root → aggregator(s) (``read_tiers`` of them)
  → the simulated agent (which answers at once: it has nothing to collect) → back
  up the same way. ``read_cached_p50_ms`` / ``read_cached_p99_ms``: the same with
  ``max_age=3600``, which the first aggregator on the way answers from its cache
  (the nearest cache, DESIGN.md). Reads alternate, one at a time, every
  ``--read-every`` seconds;
* ``cpu_pct_root`` / ``cpu_pct_aggregator`` (the busiest aggregator; all are in
  ``cpu_pct_aggregators``): utime+stime from /proc/PID/stat over the window, 100 =
  one core. ``cpu_pct_root_writer`` is the root's non-loop, non-ZeroMQ threads
  (the SQL writer thread), ``cpu_pct_root_zmq`` its ZeroMQ I/O threads (where
  CurveZMQ encrypts and decrypts), ``cpu_pct_simulator`` all simulator processes,
  ``cpu_pct_host`` the whole machine (100 per core) and ``cpu_pct_others`` what
  processes not started by this bench used meanwhile (a shared box skews figures).

Sizes: ``NODES:AGGREGATORS`` puts the aggregators side by side under the root, each
with its share of the nodes (a read crosses one aggregator); ``NODES:AGGREGATORS:chain``
stacks them (root ← agg-1 ← agg-2) with every node under the deepest, so every frame
and every read crosses all of them (``read_tiers``; issue 4 asks for reads through two
tiers). Default ``1000:2:chain,1000:2,5000:1``. Bounded: every wait has a
timeout and everything started is stopped (SIGTERM, then SIGKILL) before the next
size. A quick run::

    python bench/tree_scale.py --sizes 200:2 --warmup 5 --measure 10

``--curve`` (issue 15) runs each size twice, without keys and then with CurveZMQ on
every link (a key pair per daemon, per simulated node and for the bench's client,
made with ``clumon keys gen``'s function; each parent's ``authorized_keys`` holds its
own children's public keys only), and prints one line per size: the run without keys
under the usual keys, the run with keys beside it under the same keys prefixed
``curve_`` (``curve_loss``, ``curve_cpu_pct_root``, ``curve_cpu_pct_aggregator`` ...),
and ``root_cpu_ratio`` / ``agg_cpu_ratio`` (with keys over without; the
aggregator's is the largest of the aggregators' own ratios, all in
``agg_cpu_ratios``). ``curve_within_budget``: no loss and both ratios at most 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from clumon.cli.simulate import hist_percentile, hist_sub
from clumon.cli.daemon import Daemon, free_port
from clumon.proto.runtime import percentile
from clumon.cli.client import Client, ClientError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def start(label: str, argv: list[str], workdir: Path) -> Daemon:
    return Daemon(label, argv, workdir / f"{label}.log").start()


def ready(d: Daemon, timeout: float) -> dict:
    """Its readiness line, or an error naming its log."""
    if not d.wait_ready(timeout):
        raise RuntimeError(f"{d.label} not ready (exit {d.proc.poll()}); see {d.log_path}")
    return d.ready


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid: int) -> dict[str, int]:
    """Ticks of the root's threads: the loop (main), ZeroMQ's, and the rest (SQL writer)."""
    out = {"loop": 0, "zmq": 0, "other": 0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        key = "loop" if int(tid) == pid else "zmq" if comm.startswith("ZMQbg") else "other"
        out[key] += ticks
    return out


def host_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def pct(ticks: float, seconds: float) -> float:
    return round(100.0 * ticks / CLK_TCK / seconds, 1)


#: the run with keys over the run without, at most (issue 15)
CURVE_CPU_BUDGET = 1.25
#: figures that name the size, not a run: the same in both runs of ``--curve``
SIZE_KEYS = ("bench", "host_cores", "python", "nodes", "aggregators", "series", "interval_s", "topology",
             "read_tiers")


class TreeKeys:
    """CurveZMQ keys of one secured tree: a pair per daemon, simulated node and the
    bench's client (``bench``), and per parent an ``authorized_keys`` directory with
    the public keys of its own children (and the client's, at the root)."""

    def __init__(self, workdir: Path, nodes: int, n_aggs: int, chain: bool):
        from clumon.proto.curve import generate

        self.dir = workdir / "keys"
        self.workdir = workdir
        sims = [f"sim-{i}" for i in range(nodes)]
        aggs = [f"agg-{a}" for a in range(1, n_aggs + 1)]
        for name in ("root", "bench", *aggs, *sims):
            generate(name, self.dir)
        self._authorize("root", ["agg-1", "bench"] if chain else [*aggs, "bench"])
        for a, agg in enumerate(aggs):
            if chain:
                children = [aggs[a + 1]] if a + 1 < n_aggs else sims
            else:
                children = sims[nodes * a // n_aggs:nodes * (a + 1) // n_aggs]
            self._authorize(agg, children)

    def _authorize(self, parent: str, children: list[str]) -> None:
        d = self.workdir / f"authorized-{parent}"
        d.mkdir()
        for c in children:
            shutil.copy(self.public(c), d / f"{c}.key")

    def public(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def secret(self, name: str) -> Path:
        return self.dir / f"{name}.key_secret"

    def config(self, name: str, parent: str | None) -> list[str]:
        """``--config FILE`` with the daemon's ``[curve]`` table."""
        lines = ["[curve]", f'secret_key = "{self.secret(name)}"',
                 f'authorized_keys = "{self.workdir / f"authorized-{name}"}"']
        if parent:
            lines.append(f'parent_key = "{self.public(parent)}"')
        path = self.workdir / f"{name}-curve.toml"
        path.write_text("\n".join(lines) + "\n")
        return ["--config", str(path)]


def run_size(nodes: int, n_aggs: int, chain: bool, args: argparse.Namespace, workdir: Path,
             keys: TreeKeys | None = None) -> dict:
    py = sys.executable
    db = workdir / "clumon.db"
    port, qport = free_port(), free_port()
    started: list[Daemon] = []
    secured = keys.config if keys else (lambda name, parent: [])
    try:
        root = start("root", [py, "-m", "clumon.root", "--listen", f"tcp://127.0.0.1:{port}",
                             "--query", f"tcp://127.0.0.1:{qport}", "--metrics", "",
                             "--database", f"sqlite:///{db}", "--state-dir", str(workdir / "root"),
                             *secured("root", None)], workdir)
        started.append(root)
        ready(root, 60)
        aggs, agg_ports = [], []
        for a in range(1, n_aggs + 1):
            ap = free_port()
            parent = agg_ports[-1] if chain and agg_ports else port  # a chain: each under the one before
            agg = start(f"agg-{a}", [py, "-m", "clumon.aggregator", "--name", f"agg-{a}",
                                    "--listen", f"tcp://127.0.0.1:{ap}", "--parent", f"tcp://127.0.0.1:{parent}",
                                    "--state-dir", str(workdir / f"agg-{a}"),
                                    *secured(f"agg-{a}", f"agg-{a - 1}" if chain and a > 1 else "root")], workdir)
            started.append(agg)
            aggs.append(agg)
            agg_ports.append(ap)
        for agg in aggs:
            ready(agg, 60)
        sims = []
        for a, ap in enumerate(agg_ports):  # one simulator per aggregator, its share of the nodes
            lo, hi = nodes * a // n_aggs, nodes * (a + 1) // n_aggs
            ap = agg_ports[-1] if chain else ap  # a chain: every agent under the deepest aggregator
            parent = f"agg-{n_aggs if chain else a + 1}"
            sim_keys = ["--keys", str(keys.dir), "--parent-key", str(keys.public(parent))] if keys else []
            sim = start(f"sim-{a + 1}", [py, "-m", "clumon.cli", "simulate", "--agents", str(hi - lo),
                                        "--first", str(lo), "--series", str(args.series),
                                        "--interval", str(args.interval), "--processes", str(args.processes),
                                        "--ramp", str(args.ramp), "--stats-interval", "1", "--histogram",
                                        "--drain-timeout", str(args.drain), "--parent", f"tcp://127.0.0.1:{ap}",
                                        *sim_keys], workdir)
            started.append(sim)
            sims.append(sim)
        for sim in sims:
            ready(sim, 120)
        client = Client(f"tcp://127.0.0.1:{qport}", timeout=10.0, key=keys and str(keys.secret("bench")),
                        server_key=keys and str(keys.public("root")))
        wait_all_up(client, nodes, timeout=max(60.0, nodes / 50))
        time.sleep(args.warmup)
        result = measure(root, aggs, sims, client, nodes, args)
        result.update(topology="chain" if chain else "flat", read_tiers=n_aggs if chain else 1)
        client.close()
        for sim in sims:  # the simulator drains: waits for every ack before it exits
            sim.stop(timeout=args.drain + 60)
        finals = [_final(sim) for sim in sims]
        for agg in aggs:
            agg.stop()
        root.stop()
    finally:
        for p in reversed(started):
            p.stop(timeout=30)
    sent = sum(f.get("frames_sent", 0) for f in finals)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM (SELECT DISTINCT node, incarnation, seq FROM frames "
                              "WHERE node LIKE 'sim-%')").fetchone()[0]
    result.update(loss=sent - stored, frames_sent=sent, frames_stored=stored,
                  unacked_at_exit=sum(f.get("spool_frames", 0) for f in finals))
    return result


def _final(sim: Daemon) -> dict:
    for line in reversed(sim.lines):
        if line.startswith("{") and json.loads(line).get("final"):
            return json.loads(line)
    raise RuntimeError(f"{sim.label} printed no final stats; see {sim.log_path}")


def wait_all_up(client: Client, nodes: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            up = sum(1 for n in client.call("nodes") if n["name"].startswith("sim-") and n["state"] == "up")
        except ClientError:
            up = -1
        if up >= nodes:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {up} of {nodes} simulated nodes up after {timeout:.0f}s")
        time.sleep(0.5)


def measure(root: Daemon, aggs: list[Daemon], sims: list[Daemon], client: Client, nodes: int,
            args: argparse.Namespace) -> dict:
    sim_pids = [p for s in sims for p in s.pids()]
    h0 = client.call("health")
    s0 = [s.stats() or {} for s in sims]
    t0 = time.monotonic()
    c0 = {"root": cpu_ticks(root.proc.pid), "aggs": [cpu_ticks(a.proc.pid) for a in aggs],
          "sim": sum(cpu_ticks(p) for p in sim_pids), "threads": thread_ticks(root.proc.pid)}
    c0["host"], c0["me"] = host_ticks()[0], cpu_ticks(os.getpid())
    reads: dict[float, list[float]] = {0.0: [], 3600.0: []}
    errors = 0
    end = t0 + args.measure
    while time.monotonic() < end:
        for max_age, times in reads.items():
            node = f"sim-{random.randrange(nodes)}"
            r0 = time.perf_counter()
            try:
                out = client.call("read", targets=[node], max_age=max_age)
                if node in out["nodes"]:
                    times.append((time.perf_counter() - r0) * 1000.0)
                else:
                    errors += 1
            except ClientError:
                errors += 1
            time.sleep(args.read_every)
    t1 = time.monotonic()
    c1 = {"root": cpu_ticks(root.proc.pid), "aggs": [cpu_ticks(a.proc.pid) for a in aggs],
          "sim": sum(cpu_ticks(p) for p in sim_pids), "threads": thread_ticks(root.proc.pid),
          "host": host_ticks()[0], "me": cpu_ticks(os.getpid())}
    h1 = client.call("health")
    s1 = [s.stats() or {} for s in sims]
    dt = t1 - t0
    hist: dict[int, int] = {}
    for a, b in zip(s0, s1):
        for ms, c in hist_sub(b.get("ack_ms_hist", {}), a.get("ack_ms_hist", {})).items():
            hist[ms] = hist.get(ms, 0) + c
    agg_pct = [pct(b - a, dt) for a, b in zip(c0["aggs"], c1["aggs"])]
    return {
        "bench": "tree_scale",
        "host_cores": os.cpu_count(),
        "python": platform.python_version(),
        "nodes": nodes,
        "aggregators": len(aggs),
        "series": args.series,
        "interval_s": args.interval,
        "samples_per_s": round((h1["samples_in"] - h0["samples_in"]) / dt),
        "loss": None,
        "e2e_p50_s": hist_percentile(hist, 50),
        "e2e_p99_s": hist_percentile(hist, 99),
        "e2e_max_s": max(hist) / 1000.0 if hist else None,
        "e2e_over_1s": sum(c for ms, c in hist.items() if ms >= 1000),
        "e2e_frames": sum(hist.values()),
        "sim_late_rounds": sum(b.get("late_sends", 0) - a.get("late_sends", 0) for a, b in zip(s0, s1)),
        "read_p50_ms": _round(percentile(reads[0.0], 50, None)),
        "read_p99_ms": _round(percentile(reads[0.0], 99, None)),
        "read_cached_p50_ms": _round(percentile(reads[3600.0], 50, None)),
        "read_cached_p99_ms": _round(percentile(reads[3600.0], 99, None)),
        "reads": len(reads[0.0]) + len(reads[3600.0]),
        "read_errors": errors,
        "cpu_pct_root": pct(c1["root"] - c0["root"], dt),
        "cpu_pct_root_writer": pct(c1["threads"]["other"] - c0["threads"]["other"], dt),
        "cpu_pct_root_loop": pct(c1["threads"]["loop"] - c0["threads"]["loop"], dt),
        "cpu_pct_root_zmq": pct(c1["threads"]["zmq"] - c0["threads"]["zmq"], dt),
        "cpu_pct_aggregator": max(agg_pct),
        "cpu_pct_aggregators": agg_pct,
        "cpu_pct_simulator": pct(c1["sim"] - c0["sim"], dt),
        "cpu_pct_host": pct(c1["host"] - c0["host"], dt),
        "cpu_pct_others": pct((c1["host"] - c0["host"]) - (c1["root"] - c0["root"])
                              - sum(b - a for a, b in zip(c0["aggs"], c1["aggs"]))
                              - (c1["sim"] - c0["sim"]) - (c1["me"] - c0["me"]), dt),
        "frames_per_s": round((h1["frames_stored"] - h0["frames_stored"]) / dt),
        "root_pending_frames": h1.get("pending_frames"),
        "root_handshakes_refused": h1.get("handshakes_refused"),
        "window_s": round(dt, 1),
    }


def run_curve(nodes: int, n_aggs: int, chain: bool, args: argparse.Namespace, workdir: Path) -> dict:
    """The size without keys, then with keys: one line, the two side by side."""
    (workdir / "plain").mkdir()
    (workdir / "curve").mkdir()
    plain = run_size(nodes, n_aggs, chain, args, workdir / "plain")
    curve = run_size(nodes, n_aggs, chain, args, workdir / "curve", TreeKeys(workdir / "curve", nodes, n_aggs, chain))
    return side_by_side(plain, curve)


def side_by_side(plain: dict, curve: dict) -> dict:
    out = dict(plain)
    out.update({f"curve_{k}": v for k, v in curve.items() if k not in SIZE_KEYS})
    agg_ratios = [_ratio(c, p) for c, p in zip(curve["cpu_pct_aggregators"], plain["cpu_pct_aggregators"])]
    out["root_cpu_ratio"] = _ratio(curve["cpu_pct_root"], plain["cpu_pct_root"])
    out["agg_cpu_ratios"] = agg_ratios
    out["agg_cpu_ratio"] = max(agg_ratios, key=lambda r: float("inf") if r is None else r)
    out["curve_within_budget"] = (curve["loss"] == 0 and all(
        r is not None and r <= CURVE_CPU_BUDGET for r in (out["root_cpu_ratio"], *agg_ratios)))
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def parse_size(text: str) -> tuple[int, int, bool]:
    """``NODES:AGGREGATORS`` (side by side under the root) or ``NODES:AGGREGATORS:chain``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "chain"):
        raise SystemExit(f"tree_scale: bad size {text!r}: expected NODES:AGGREGATORS[:chain]")
    try:
        nodes, n_aggs = int(parts[0]), int(parts[1])
    except ValueError:
        raise SystemExit(f"tree_scale: bad size {text!r}: NODES and AGGREGATORS are integers") from None
    if nodes < 1 or n_aggs < 1:
        raise SystemExit(f"tree_scale: bad size {text!r}: NODES and AGGREGATORS must be at least 1")
    return nodes, n_aggs, len(parts) == 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000:2:chain,1000:2,5000:1",
                   help="NODES:AGGREGATORS[:chain], comma separated; with ':chain' the aggregators are "
                        "stacked (root <- agg-1 <- agg-2 ...) and every agent is under the deepest one")
    p.add_argument("--series", type=int, default=150)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--processes", type=int, default=2, help="simulator worker processes per simulator")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which simulated agents connect")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds after all nodes are up")
    p.add_argument("--measure", type=float, default=60.0, help="seconds of the measured window")
    p.add_argument("--read-every", type=float, default=0.05, help="pause between sync reads")
    p.add_argument("--drain", type=float, default=120.0,
                   help="at the end, how long the simulator waits for the root to acknowledge its backlog")
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs, database)")
    p.add_argument("--curve", action="store_true",
                   help="run each size without keys and with CurveZMQ on every link; one line, side by side")
    args = p.parse_args()
    args.measure = max(1.0, min(args.measure, 3600.0))
    args.warmup = max(0.0, min(args.warmup, 3600.0))
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    for nodes, n_aggs, chain in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"tree_scale_{nodes}_"))
        try:
            run = run_curve if args.curve else run_size
            print(json.dumps(run(nodes, n_aggs, chain, args, workdir)), flush=True)
        finally:
            if args.keep:
                print(f"# kept {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
