"""What the real agent costs a node: CPU, memory, collect time and bytes on the wire.

Starts two real ``clumon-agent`` processes at a 1 s interval against a receiver in
this process (a ROUTER that acknowledges every stored frame and heartbeats, as a
parent does): one with the default masks, one unsuppressed (``masks.max_silence =
0``: every value in every frame). After ``--warmup`` seconds it measures for
``--duration`` seconds, once as the node is and once with ``--extra-processes``
idle ``sleep`` processes (killed at the end), and prints one JSON line per run.

    python bench/agent_overhead.py [--duration 120] [--warmup 10] [--extra-processes 500]
                                   [--only as_is|extra|services] [--services 20]

The ``services`` pair of runs (issue 13) measures the process and service watch:
with the extra processes and ``--services`` programs running (half TCP servers,
half sleepers with a distinctive command line), the default-mask agent runs once
without ``[[service]]`` tables (``extra_no_watch``) and once watching all of them
(half found by port, half by cmdline regex; ``check_interval`` 5 s), so the
difference is what the watch costs; ``watch_delta_cpu_pct`` says it.

``--curve`` (issue 15) measures what CurveZMQ costs the agent. Sequential runs
differ by more than the budget (+0.01 % of a core; 0.141-0.154 % for the same code),
so, as bench/agent_ab.py does, two default-mask agents run at once, one without keys
against a plain receiver and one with a ``[curve]`` table (its own key pair, the
receiver's public key) against a CURVE receiver whose ZAP handler accepts its key;
``--rounds`` rounds alternate which one starts first (the second to tick finds the
interpreter's code warm). One JSON line: each side's CPU per round and on average
(``cpu_pct_schedstat`` without keys, ``curve_cpu_pct_schedstat`` with),
``curve_delta_cpu_pct`` (with minus without, the mean over the rounds, in % of a
core, from schedstat) and ``curve_within_budget`` (delta at most 0.01).

The agents run with ``MALLOC_ARENA_MAX=2``, as deploy/clumon-agent.service
starts them. cpu_pct is the default-mask agent's user+system time over wall time (100 = one
core), from /proc/PID/stat (in 10 ms steps: 0.008 % over 120 s), and
cpu_pct_schedstat the same from the threads' run time in nanoseconds
(/proc/PID/task/*/schedstat); timer_wakeups_per_s how often its schedule's timer
fired; acks_in_per_s how many ACKs woke it (its parent holds them ``ack_every``); rss_mib its VmRSS at the end; collect_p50/p99_ms the
agent's own timing of each read (all sources due at once) in the window;
values_collected the values it read per second; wire_bytes_per_s the frame bytes it
sent per second (msgpack frames as the parent receives them, without ZeroMQ/TCP
framing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
import zmq.auth

from clumon.cli.daemon import run_ns
from clumon.proto import codec
from clumon.proto.frames import Ack, AckEntry, Heartbeat, Kind, Request, make, seq_ranges
from clumon.proto.runtime import percentile

TICK = os.sysconf("SC_CLK_TCK")


class Receiver(threading.Thread):
    """A parent in miniature: counts bytes per child, acks stored frames at the pace
    the child's HELLO asks for (``ack_every``: held, then one ACK for all, as
    proto/downlink does), heartbeats a child it sent nothing else for 5 s (as a real
    parent does), and asks children for their figures (REQUEST stats)."""

    def __init__(self, curve: tuple[Path, Path] | None = None):
        """``curve``: (this receiver's secret key file, directory of the accepted
        public keys): a CURVE server whose ZAP handler checks each child's key."""
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.auth = None
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            public, secret = zmq.auth.load_certificate(str(curve[0]))
            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(curve[1]))
            self.sock.setsockopt(zmq.CURVE_SERVER, 1)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.incarnation = time.time_ns()
        self.bytes: dict[str, int] = {}
        self.frames: dict[str, int] = {}
        self.replies: dict[str, dict] = {}
        self._asks: list[tuple[str, str]] = []
        self._last_sent: dict[str, float] = {}
        #: child -> its ack_every; child -> (when the held ACK goes, sender, incarnation, seqs)
        self._ack_every: dict[str, float] = {}
        self._held: dict[str, tuple[float, str, int, list[int]]] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        last_hb: dict[str, float] = {}
        n = 0
        while not self._halt.is_set():
            if self.sock.poll(100):
                ident, data = self.sock.recv_multipart()
                who = ident.decode()
                with self._lock:
                    self.bytes[who] = self.bytes.get(who, 0) + len(data)
                    self.frames[who] = self.frames.get(who, 0) + 1
                frame = codec.decode(data)
                if frame.kind is Kind.HELLO:
                    self._ack_every[who] = float(frame.body.inventory.get("ack_every", 0.0))
                if frame.stored:
                    self._ack(who, frame)
                elif frame.kind is Kind.HEARTBEAT and who in self._held:
                    self._flush(who)
                elif frame.kind is Kind.REPLY:
                    self.replies[frame.body.id] = frame.body.result
                last_hb.setdefault(who, 0.0)
            now = time.monotonic()
            for who in [w for w, held in self._held.items() if now >= held[0]]:
                self._flush(who)
            # as proto/downlink.py: a heartbeat only to a child sent nothing (an ACK
            # counts) for heartbeat_interval
            for who in last_hb:
                if now - self._last_sent.get(who, 0.0) > 5.0:
                    self._send(who.encode(), Heartbeat(self.incarnation))
            while self._asks:
                who, rid = self._asks.pop()
                n += 1
                self._send(who.encode(), Request(rid, "stats", (who,), {"durations": True}, 5.0))
        self.sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

    def _ack(self, who: str, frame) -> None:
        every = self._ack_every.get(who, 0.0)
        held = self._held.get(who)
        if held is not None and (held[1], held[2]) == (frame.sender, frame.incarnation):
            held[3].append(frame.seq)
        elif every > 0:
            if held is not None:
                self._flush(who)
            self._held[who] = (time.monotonic() + every, frame.sender, frame.incarnation, [frame.seq])
        else:
            self._send(who.encode(), Ack((AckEntry(frame.sender, frame.incarnation, ((frame.seq, frame.seq),)),)))

    def _flush(self, who: str) -> None:
        _, sender, incarnation, seqs = self._held.pop(who)
        self._send(who.encode(), Ack((AckEntry(sender, incarnation, seq_ranges(seqs)),)))

    def _send(self, ident: bytes, body) -> None:
        who = ident.decode()
        if who in self._held and not isinstance(body, Ack):  # held ACKs go first, as proto/downlink does
            self._flush(who)
        self.sock.send_multipart([ident, codec.encode(make("bench", self.incarnation, time.time(), body))])
        self._last_sent[who] = time.monotonic()

    def stats(self, who: str, timeout: float = 10.0) -> dict:
        rid = f"stats-{time.monotonic_ns()}"
        self._asks.append((who, rid))
        deadline = time.monotonic() + timeout
        while rid not in self.replies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{who} did not answer stats")
            time.sleep(0.05)
        return self.replies.pop(rid)[who]

    def sent(self, who: str) -> tuple[int, int]:
        with self._lock:
            return self.bytes.get(who, 0), self.frames.get(who, 0)

    def stop(self) -> None:
        self._halt.set()


def start_agent(name: str, port: int, workdir: Path, extra: str = "") -> subprocess.Popen:
    cfg = workdir / f"{name}.toml"
    cfg.write_text(f'name = "{name}"\nparents = ["tcp://127.0.0.1:{port}"]\nstate_dir = "{workdir / name}"\n'
                   f'interval = 1.0\njitter = 0.0\n{extra}')
    # as deploy/clumon-agent.service runs it
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "clumon.agent", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=open(workdir / f"{name}.log", "wb"), env=env)
    line = proc.stdout.readline().decode()
    if not line.startswith("CLUMON-READY"):
        proc.kill()
        raise RuntimeError(f"{name} did not start: {(workdir / f'{name}.log').read_text()[-2000:]}")
    return proc


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (collect, ZMQbg/IO, the loop as python...)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                text = fh.read()
        except FileNotFoundError:
            continue
        name = "main" if int(tid) == pid else text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def status_mib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def processes_present() -> int:
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def measure(label: str, warmup: float, duration: float, workdir: Path, masked_extra: str = "") -> dict:
    rx = Receiver()
    rx.start()
    masked = start_agent("bench-masked", rx.port, workdir, masked_extra)
    unmasked = start_agent("bench-unmasked", rx.port, workdir, "[masks]\nmax_silence = 0.0\n")
    try:
        time.sleep(warmup)
        s0 = rx.stats("bench-masked")
        c0, t0, n0 = cpu_seconds(masked.pid), time.monotonic(), run_ns(masked.pid)
        th0 = thread_cpu(masked.pid)
        cu0 = cpu_seconds(unmasked.pid)
        b0, bu0 = rx.sent("bench-masked"), rx.sent("bench-unmasked")
        time.sleep(duration)
        b1, bu1 = rx.sent("bench-masked"), rx.sent("bench-unmasked")
        c1, t1, n1 = cpu_seconds(masked.pid), time.monotonic(), run_ns(masked.pid)
        th1 = thread_cpu(masked.pid)
        cu1 = cpu_seconds(unmasked.pid)
        s1 = rx.stats("bench-masked")
        wall = t1 - t0
        new_reads = s1["reads"] - s0["reads"]
        durations = s1["durations_ms"][-new_reads:] if new_reads > 0 else []
        return {
            "bench": "agent_overhead", "run": label, "host_cores": os.cpu_count(),
            "python": platform.python_version(), "duration_s": round(wall, 1),
            "cpu_pct": round((c1 - c0) / wall * 100, 3),
            # the same from the threads' run time in ns (threads that ended in the
            # window are missed; the agent's threads live as long as it does)
            "cpu_pct_schedstat": round((n1 - n0) / 1e9 / wall * 100, 4),
            "cpu_pct_by_thread": {k: round((v - th0.get(k, 0.0)) / wall * 100, 3) for k, v in th1.items()},
            "rss_mib": round(status_mib(masked.pid, "VmRSS"), 1),
            "rss_peak_mib": round(status_mib(masked.pid, "VmHWM"), 1),
            "collect_p50_ms": round(percentile(durations, 50), 3), "collect_p99_ms": round(percentile(durations, 99), 3),
            "values_collected": round((s1["values_collected"] - s0["values_collected"]) / wall, 1),
            "series": s1["series"],
            "timer_wakeups_per_s": round((s1.get("timer_fires", 0) - s0.get("timer_fires", 0)) / wall, 2),
            "acks_in_per_s": round((s1.get("acks_in", 0) - s0.get("acks_in", 0)) / wall, 2),
            "values_sent_per_s": round((s1["values_passed"] - s0["values_passed"]) / wall, 1),
            "wire_bytes_per_s": round((b1[0] - b0[0]) / wall, 1),
            "wire_frames_per_s": round((b1[1] - b0[1]) / wall, 2),
            "wire_bytes_per_s_unmasked": round((bu1[0] - bu0[0]) / wall, 1),
            "cpu_pct_unmasked": round((cu1 - cu0) / wall * 100, 3),
            "processes_present": processes_present(),
            **({"watch_checks_per_s": round((s1["watch_checks"] - s0["watch_checks"]) / wall, 3),
                "watch_check_ms_last": s1["watch_check_ms"],
                "watch_thread_cpu_pct": round((s1["watch_cpu_s"] - s0["watch_cpu_s"]) / wall * 100, 4)}
               if "watch_checks" in s1 else {}),
        }
    finally:
        for p in (masked, unmasked):
            p.terminate()
        for p in (masked, unmasked):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        rx.stop()
        rx.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds measured per run (>= 120 for the record)")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--extra-processes", type=int, default=500)
    parser.add_argument("--only", choices=("as_is", "extra", "services"), default=None)
    parser.add_argument("--services", type=int, default=20, help="watched services in the services runs")
    parser.add_argument("--curve", action="store_true",
                        help="only: an agent without keys and one with CurveZMQ side by side (issue 15)")
    parser.add_argument("--rounds", type=int, default=2, help="--curve: rounds, each side starting first as often")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clumon-bench-") as tmp:
        workdir = Path(tmp)
        if args.curve:
            print(json.dumps(curve_runs(args, workdir)), flush=True)
            return
        if args.only in (None, "as_is"):
            print(json.dumps(measure("as_is", args.warmup, args.duration, workdir)), flush=True)
        if args.only in (None, "extra"):
            sleepers: list[subprocess.Popen] = []
            try:
                for _ in range(args.extra_processes):
                    sleepers.append(subprocess.Popen(["sleep", "100000"]))
                print(json.dumps(measure(f"{args.extra_processes}_extra_processes", args.warmup, args.duration,
                                         workdir)), flush=True)
            finally:
                for p in sleepers:
                    p.kill()
                for p in sleepers:
                    p.wait()
        if args.only == "services":
            print(json.dumps(services_runs(args, workdir)), flush=True)


SERVER = ("import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen()\n"
          "while True: time.sleep(3600)\n")


def services_runs(args, workdir: Path) -> dict:
    """The same node (extra processes, servers, sleepers) with and without the watch."""
    from clumon.cli.daemon import free_port

    procs: list[subprocess.Popen] = []
    tables = []
    try:
        for _ in range(args.extra_processes):
            procs.append(subprocess.Popen(["sleep", "100000"]))
        by_port = args.services // 2
        for i in range(by_port):
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-c", SERVER, str(port)]))
            tables.append(f'[[service]]\nname = "server-{i}"\nport = {port}\n')
        for i in range(args.services - by_port):
            procs.append(subprocess.Popen(["sleep", f"{300000 + i}"]))
            tables.append(f'[[service]]\nname = "sleeper-{i}"\ncmdline = "^sleep {300000 + i}$"\n')
        time.sleep(1.0)
        without = measure("extra_no_watch", args.warmup, args.duration, workdir)
        print(json.dumps(without), flush=True)
        watched = measure(f"extra_watching_{args.services}_services", args.warmup, args.duration, workdir,
                          "\n".join(tables))
        watched["watch_delta_cpu_pct"] = round(watched["cpu_pct"] - without["cpu_pct"], 4)
        watched["watch_delta_cpu_pct_schedstat"] = round(watched["cpu_pct_schedstat"] - without["cpu_pct_schedstat"], 4)
        watched["services"] = args.services
        return watched
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


#: what keys may add to the agent's CPU, in % of a core (issue 15)
CURVE_BUDGET_PCT = 0.01


def curve_keys(workdir: Path) -> tuple[tuple[Path, Path], str]:
    """Key pairs of the receiver and the agent with keys: the receiver's (secret key,
    accepted keys), and the agent's ``[curve]`` table."""
    from clumon.proto.curve import generate

    keys, accepted = workdir / "keys", workdir / "accepted"
    accepted.mkdir()
    generate("bench", keys)
    agent_public, agent_secret = generate("bench-curve", keys)
    (accepted / agent_public.name).write_bytes(agent_public.read_bytes())
    table = f'[curve]\nsecret_key = "{agent_secret}"\nparent_key = "{keys / "bench.key"}"\n'
    return (keys / "bench.key_secret", accepted), table


def curve_round(first: str, warmup: float, duration: float, workdir: Path, server, table: str) -> dict:
    """Both agents at once, ``first`` started first; each side's CPU (schedstat and ticks)."""
    rx = {"plain": Receiver(), "curve": Receiver(server)}
    for r in rx.values():
        r.start()
    procs: dict[str, subprocess.Popen] = {}
    try:
        for side in (first, "curve" if first == "plain" else "plain"):
            procs[side] = start_agent(f"bench-{side}", rx[side].port, workdir, table if side == "curve" else "")
        time.sleep(warmup)
        n0 = {s: run_ns(p.pid) for s, p in procs.items()}
        c0 = {s: cpu_seconds(p.pid) for s, p in procs.items()}
        b0 = {s: rx[s].sent(f"bench-{s}") for s in procs}
        t0 = time.monotonic()
        time.sleep(duration)
        n1 = {s: run_ns(p.pid) for s, p in procs.items()}
        c1 = {s: cpu_seconds(p.pid) for s, p in procs.items()}
        b1 = {s: rx[s].sent(f"bench-{s}") for s in procs}
        wall = time.monotonic() - t0
        out: dict = {"first": first}
        for s, p in procs.items():
            out[f"{s}_pct_schedstat"] = round((n1[s] - n0[s]) / 1e9 / wall * 100, 4)
            out[f"{s}_pct"] = round((c1[s] - c0[s]) / wall * 100, 3)
            out[f"{s}_rss_mib"] = round(status_mib(p.pid, "VmRSS"), 1)
            out[f"{s}_frames_per_s"] = round((b1[s][1] - b0[s][1]) / wall, 2)
        return out
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for r in rx.values():
            r.stop()
            r.join(5)


def curve_runs(args, workdir: Path) -> dict:
    """Without keys and with CurveZMQ, side by side, start order alternated."""
    server, table = curve_keys(workdir)
    rounds = [curve_round("plain" if i % 2 == 0 else "curve", args.warmup, args.duration, workdir, server, table)
              for i in range(max(1, args.rounds))]

    def mean(key: str, digits: int = 4) -> float:
        return round(sum(r[key] for r in rounds) / len(rounds), digits)

    delta = round(mean("curve_pct_schedstat", 6) - mean("plain_pct_schedstat", 6), 4)
    return {
        "bench": "agent_overhead", "run": "curve_side_by_side", "host_cores": os.cpu_count(),
        "python": platform.python_version(), "duration_s": args.duration, "rounds": rounds,
        "cpu_pct": mean("plain_pct", 3), "cpu_pct_schedstat": mean("plain_pct_schedstat"),
        "rss_mib": mean("plain_rss_mib", 1),
        "curve_cpu_pct": mean("curve_pct", 3), "curve_cpu_pct_schedstat": mean("curve_pct_schedstat"),
        "curve_rss_mib": mean("curve_rss_mib", 1),
        "curve_delta_cpu_pct": delta,
        "curve_delta_cpu_pct_ticks": round(mean("curve_pct", 6) - mean("plain_pct", 6), 3),
        "curve_within_budget": delta <= CURVE_BUDGET_PCT,
        "load": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    main()
