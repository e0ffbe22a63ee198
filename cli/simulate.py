"""``clumon simulate``: many agents impersonated from a few processes, to size a tree.

Each of ``processes`` workers runs one uvloop loop with ``agents / processes``
simulated agents. Every simulated agent is a real child of the tree: its own
DEALER (routing id ``sim-<i>``), its own incarnation, its own ``Uplink`` and
``Spool`` — so HELLO, DATA, acks, heartbeats, replay, failover and sync reads all
go through the same code as a real agent's. Only the values are invented: gauges
wander with noise, counters increase.

What keeps an agent cheap (the bench runs 5,000 on a 2-core box next to the
root and the aggregator):

* one scheduler per worker instead of one timer per agent: agents' phases are
  spread evenly over the interval (no storm), the scheduler wakes every few ms
  and sends for every agent that came due, updating their values in one numpy
  operation;
* DATA bodies are built from a row of that matrix (``tobytes``), never from a
  list of Python floats;
* one task ticks every uplink's heartbeat/resend/failover logic in slices.

With ``keys`` (``--keys DIR --parent-key FILE``) every simulated agent speaks
CurveZMQ as a real one with a ``[curve]`` table does: its own secret key
``DIR/<name>.key_secret`` (as ``clumon keys gen`` writes it) and the parent's
public key, so a secured aggregator or root accepts it by name.

The supervisor (``run``) starts the workers, prints ``CLUMON-READY`` once every
agent is created, then one JSON line of stats every ``stats_interval`` (frames
sent and acked, spool backlog, end-to-end ack latency), stops by itself after
``duration`` or on SIGTERM/SIGINT, and prints a final line with ``"final": true``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import multiprocessing as mp
import queue
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clumon.proto.config import ChildLink

log = logging.getLogger("clumon.simulate")

#: ack latency histogram: 1 ms buckets up to this many ms, the last one open-ended
HIST_MAX_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig(ChildLink):
    """Settings of one simulation (from the ``clumon simulate`` command line)."""

    agents: int
    series: int
    interval: float
    parents: tuple[str, ...]
    processes: int = 2
    duration: float | None = None
    #: node names are ``<prefix><i>`` for i in first .. first + agents - 1
    prefix: str = "sim-"
    first: int = 0
    #: agents are created (sockets connected) over this many seconds
    ramp: float | None = None
    stats_interval: float = 10.0
    #: include the ack latency histogram (ms -> count) in the stats lines
    histogram: bool = False
    #: on stop, wait this long for the root to acknowledge what was sent
    drain_timeout: float = 10.0
    spool_max_bytes: int = 16 * 1024 * 1024
    #: fraction of series that are counters (``_total``); the rest are gauges
    counter_share: float = 0.25
    #: the first gauges carry the names the overview and the rack grid read (CPU idle
    #: and iowait, memory used, load1), so a simulated site has hottest nodes
    node_series: bool = False
    seed: int = 0
    #: CurveZMQ: directory of the agents' secret keys (``<prefix><i>.key_secret``); empty: no keys
    keys: str = ""
    #: the parents' public key files: one for every parent, or one per parent in order
    parent_keys: tuple[str, ...] = ()

    def check(self) -> str | None:
        if self.agents < 1 or self.series < 1 or self.series > 65535:
            return "--agents must be >= 1 and --series in 1..65535"
        if self.interval <= 0 or self.processes < 1:
            return "--interval must be > 0 and --processes >= 1"
        from clumon.proto.transport import valid_endpoint

        bad = [p for p in self.parents if not valid_endpoint(p)]
        if not self.parents or bad:
            return f"--parent: expected endpoints like tcp://host:port, got {list(self.parents)!r}"
        if self.keys or self.parent_keys:
            return self._keys_problem()
        return None

    def _keys_problem(self) -> str | None:
        from clumon.proto.curve import KeyFileError, load_public

        if not (self.keys and self.parent_keys):
            return "--keys (the agents' secret keys) and --parent-key (the parent's public key) go together"
        if len(self.parent_keys) not in (1, len(self.parents)):
            return f"--parent-key: one file, or one per parent ({len(self.parents)}), got {len(self.parent_keys)}"
        try:
            for k in self.parent_keys:
                load_public(k)
        except KeyFileError as exc:
            return f"--parent-key: {exc}"
        missing = [n for n in self.names() if not self.secret_key(n).is_file()]
        if missing:
            return (f"--keys {self.keys}: no secret key for {len(missing)} of {self.agents} agents "
                    f"(first {self.secret_key(missing[0]).name}; `clumon keys gen NAME --dir DIR` writes one)")
        return None

    def names(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(self.first, self.first + self.agents)]

    def secret_key(self, name: str) -> Path:
        return Path(self.keys) / f"{name}.key_secret"

    def parent_key_files(self) -> tuple[str, ...]:
        """The parent's public key file for each parent, in the order of ``parents``."""
        keys = self.parent_keys
        return keys * len(self.parents) if len(keys) == 1 else keys

    def share(self, worker: int) -> tuple[int, int]:
        """(first global index, count) of the agents a worker impersonates."""
        p = min(self.processes, self.agents)
        lo = self.agents * worker // p
        hi = self.agents * (worker + 1) // p
        return lo, hi - lo


#: gauges named as the agent names them, for ``node_series``
NODE_SERIES = ('node_cpu_ratio{mode="idle"}', 'node_cpu_ratio{mode="iowait"}', "node_memory_used_ratio",
               "node_load1")


def series_names(n: int, counter_share: float, node_series: bool = False) -> tuple[list[str], list[bool]]:
    """Prometheus-style names and whether each is a counter, in dictionary order
    (sorted, as the agent's dictionary is: every counter before every gauge, which
    the worker's column slices rely on)."""
    every = max(1, round(1 / counter_share)) if counter_share > 0 else 0
    # with node_series, counters sort before "node_*" as they sort before "sim_gauge_*"
    counter = "clumon_sim_events_{:04d}_total" if node_series else "sim_events_{:04d}_total"
    named = list(NODE_SERIES) if node_series else []
    names, counters = [], []
    for k in range(n):
        is_counter = bool(every) and k % every == every - 1
        if is_counter:
            names.append(counter.format(k))
        else:
            names.append(named.pop(0) if named else f"sim_gauge_{k:04d}_ratio")
        counters.append(is_counter)
    order = sorted(range(n), key=names.__getitem__)
    return [names[i] for i in order], [counters[i] for i in order]


class LatencyHistogram:
    """Counts of end-to-end ack latencies in 1 ms buckets (bounded: HIST_MAX_MS + 1 keys)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, seconds: float) -> None:
        ms = min(HIST_MAX_MS, int(seconds * 1000.0))
        self.counts[ms] = self.counts.get(ms, 0) + 1

    def sparse(self) -> dict[int, int]:
        return dict(self.counts)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """The q-th percentile (0..100) in seconds of a sparse ms histogram (bucket midpoint)."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return (ms + 0.5) / 1000.0
    return None


def hist_sub(later: dict, earlier: dict) -> dict[int, int]:
    """Counts added between two cumulative histograms (JSON keys may be strings)."""
    e = {int(k): v for k, v in earlier.items()}
    out = {int(k): v - e.get(int(k), 0) for k, v in later.items()}
    return {k: v for k, v in out.items() if v > 0}


# --- the supervisor -----------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one: each agent needs ~2 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _combine(parts: dict[int, dict], histogram: bool) -> dict[str, Any]:
    keys = ("agents", "frames_sent", "frames_acked", "spool_frames", "spool_bytes", "spool_dropped",
            "frames_out", "bytes_out", "replies", "failovers", "late_sends")
    out: dict[str, Any] = {k: sum(p.get(k, 0) for p in parts.values()) for k in keys}
    hist: dict[int, int] = {}
    for p in parts.values():
        for ms, c in p.get("hist", {}).items():
            hist[int(ms)] = hist.get(int(ms), 0) + c
    out["ack_p50_s"] = hist_percentile(hist, 50)
    out["ack_p99_s"] = hist_percentile(hist, 99)
    if histogram:
        out["ack_ms_hist"] = hist
    return out


def run(cfg: SimConfig) -> int:
    """Start the workers, report, stop after ``duration`` or on a signal; exit code."""
    problem = cfg.check()
    if problem:
        print(f"clumon simulate: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fds = raise_fd_limit()
    per_worker = math.ceil(cfg.agents / min(cfg.processes, cfg.agents))
    if fds < 2 * per_worker + 64:
        log.warning("open-file limit %d is low for %d agents per process", fds, per_worker)
    stop = {"set": False}

    def on_signal(*_: Any) -> None:
        stop["set"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    spawn = mp.get_context("spawn")
    reports: mp.Queue = spawn.Queue()
    workers = []
    for w in range(min(cfg.processes, cfg.agents)):
        p = spawn.Process(target=worker_main, args=(cfg, w, reports), name=f"simulate-{w}", daemon=True)
        p.start()
        workers.append(p)
    try:
        return _supervise(cfg, workers, reports, stop)
    finally:
        for p in workers:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + cfg.drain_timeout + 10
        for p in workers:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for s, h in old.items():
            signal.signal(s, h)


def _supervise(cfg: SimConfig, workers: list, reports: mp.Queue, stop: dict) -> int:
    from clumon.proto import runtime

    latest: dict[int, dict] = {}
    ready: set[int] = set()
    final: set[int] = set()
    started = time.monotonic()
    deadline = None if cfg.duration is None else started + cfg.duration
    next_stats = started + cfg.stats_interval
    stopping = False
    status = 0
    while len(final) < len(workers):
        try:
            kind, w, payload = reports.get(timeout=0.2)
        except queue.Empty:
            kind = None
        if kind == "ready":
            ready.add(w)
            if len(ready) == len(workers):
                runtime.notify_ready("simulate", {"agents": cfg.agents, "series": cfg.series,
                                                  "interval": cfg.interval, "processes": len(workers),
                                                  "parents": list(cfg.parents), "prefix": cfg.prefix,
                                                  "first": cfg.first})
        elif kind in ("stats", "final"):
            latest[w] = payload
            if kind == "final":
                final.add(w)
        now = time.monotonic()
        if not stopping and (stop["set"] or (deadline is not None and now >= deadline)):
            stopping = True
            for p in workers:
                if p.is_alive():
                    p.terminate()  # SIGTERM: each worker drains, reports "final", exits
        dead = [i for i, p in enumerate(workers) if not p.is_alive() and i not in final]
        if dead and reports.empty():
            # a worker that died without its final report: say so and stop the rest
            log.error("simulator worker(s) %s exited (codes %s)", dead, [workers[i].exitcode for i in dead])
            final.update(dead)
            status = 1
            if not stopping:
                stop["set"] = True
        if now >= next_stats and latest and not stopping:
            next_stats = now + cfg.stats_interval
            _print_stats(cfg, latest, started, final=False)
    _print_stats(cfg, latest, started, final=True)
    return status


def _print_stats(cfg: SimConfig, latest: dict[int, dict], started: float, final: bool) -> None:
    line = {"simulate": "stats", "t_s": round(time.monotonic() - started, 3), "final": final,
            **_combine(latest, cfg.histogram)}
    print(json.dumps(line), flush=True)


def worker_main(cfg: SimConfig, worker: int, reports: mp.Queue) -> None:
    """Entry point of one worker process."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s simulate-{worker} %(name)s: %(message)s")
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    from clumon.proto import runtime

    from clumon.cli.simworker import Worker

    runtime.install_uvloop()
    first, count = cfg.share(worker)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        w = Worker(cfg, first + cfg.first, count, lambda kind, payload: reports.put((kind, worker, payload)))
        await w.run(stop)

    try:
        asyncio.run(main())
    finally:
        reports.close()
        reports.join_thread()


__all__ = ["SimConfig", "run", "series_names", "hist_percentile", "hist_sub", "LatencyHistogram"]
