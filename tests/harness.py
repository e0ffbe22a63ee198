"""Test harness: free ports, TOML files, and daemons started as real processes.

Every process a test starts is stopped by the fixture's finalizer (SIGTERM, then
SIGKILL after a grace period), so no test leaves a daemon running.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import zmq

from clumon.proto import codec
from clumon.proto.frames import Heartbeat, Hello, Kind, make

from clumon.cli.daemon import Daemon, free_port, write_toml  # noqa: F401  (free_port, write_toml: for the tests)


#: short timings so liveness and failover tests run in seconds
FAST = {"heartbeat_interval": 0.5, "jitter": 0.2}


class Tree:
    """Starts root, aggregators and agents as processes; stops them all at the end.

    With ``CLUMON_TEST_CURVE=1`` in the environment every daemon it starts runs with
    CurveZMQ keys (one key pair per name, the parents' ``authorized_keys`` one shared
    directory), and the test's clients find theirs through ``CLUMON_KEY``: the same
    tests, secured (``.ci/run`` runs a set of them so)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.daemons: list[Daemon] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.curve = os.environ.get("CLUMON_TEST_CURVE") == "1"
        self._saved_env: dict[str, str | None] = {}
        if self.curve:
            from curve_keys import Keys
            self.keys = Keys(tmp)
            self.keys.gen("root", "tester")
            self.auth = self.keys.authorized("parents", "tester")
            for var, value in (("CLUMON_KEY", str(self.keys.secret("tester"))),
                               ("CLUMON_SERVER_KEY", str(self.keys.public("root")))):
                self._saved_env[var] = os.environ.get(var)
                os.environ[var] = self.env[var] = value

    def _secure(self, module: str, config: dict) -> dict:
        if not self.curve or "curve" in config:
            return config
        import shutil
        name = config.get("name") or "root"
        self.keys.gen(name)
        shutil.copy(self.keys.public(name), self.auth / f"{name}.key")
        table = {"secret_key": str(self.keys.secret(name))}
        if module != "clumon.agent":
            table["authorized_keys"] = str(self.auth)
        if module != "clumon.root":
            by_port = {str(getattr(d, "port", "")): d.key_name for d in self.daemons if hasattr(d, "key_name")}
            parents = [by_port.get(p.rsplit(":", 1)[1], "root") for p in config.get("parents", [])]
            table["parent_key"] = [str(self.keys.public(p)) for p in parents]
        return {**config, "curve": table}

    def _start(self, label: str, module: str, config: dict, extra: list[str] = (), wait: bool = True) -> Daemon:
        cfg = write_toml(self.tmp / f"{label}.toml", self._secure(module, config))
        d = Daemon(label, [sys.executable, "-m", module, "--config", str(cfg), *extra], self.tmp / f"{label}.log")
        d.start(self.env)
        self.daemons.append(d)
        if wait and not d.wait_ready(30):
            raise AssertionError(f"{label} not ready in 30 s:\n{d.log_path.read_text()[-3000:]}")
        return d

    def root(self, label: str = "root", db: Path | None = None, database: str | None = None, **cfg) -> Daemon:
        port, qport = cfg.pop("port", None) or free_port(), free_port()
        database = database or f"sqlite:///{db or self.tmp / 'clumon.db'}"
        d = self._start(label, "clumon.root", {
            "listen": f"tcp://127.0.0.1:{port}", "query": f"tcp://127.0.0.1:{qport}", "metrics": "",
            "database": database, "state_dir": str(self.tmp / label), "heartbeat_interval": 0.5,
            "down_after": 3.0, **cfg})
        d.port, d.query = port, f"tcp://127.0.0.1:{qport}"
        d.key_name = cfg.get("name", "root")
        return d

    def aggregator(self, name: str, parents: list[int], port: int | None = None, wait: bool = True, **cfg) -> Daemon:
        port = port or free_port()
        d = self._start(name, "clumon.aggregator", {
            "name": name, "listen": f"tcp://127.0.0.1:{port}",
            "parents": [f"tcp://127.0.0.1:{p}" for p in parents], "state_dir": str(self.tmp / name),
            "down_after": 3.0, "failover_after": 3.0, "health_interval": 1.0, **FAST, **cfg}, wait=wait)
        d.port, d.key_name = port, name
        return d

    def agent(self, name: str, parents: list[int], wait: bool = True, label: str | None = None, **cfg) -> Daemon:
        return self._start(label or name, "clumon.agent", {
            "name": name, "parents": [f"tcp://127.0.0.1:{p}" for p in parents],
            "state_dir": str(self.tmp / name), "failover_after": 3.0, **FAST, **cfg}, wait=wait)

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for d in reversed(self.daemons):
            codes[d.label] = d.stop()
        for var, value in self._saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        self._saved_env.clear()
        return codes


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; a generous timeout, never a bare sleep."""
    import time
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the daemon may not answer yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def restart(tree: Tree, d: Daemon, wait: bool = True) -> Daemon:
    """Start a stopped daemon again with the same command line (same name, ports, state)."""
    again = Daemon(d.label, d.argv, d.log_path)
    again.start(tree.env)
    for attr in ("port", "query", "key_name"):
        if hasattr(d, attr):
            setattr(again, attr, getattr(d, attr))
    tree.daemons.append(again)
    if wait and not again.wait_ready(30):
        raise AssertionError(f"{d.label} not ready after restart:\n{d.log_path.read_text()[-3000:]}")
    return again


def kill9(d: Daemon) -> float:
    """SIGKILL a daemon; returns the wall-clock time of the kill."""
    import signal
    import time
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    return time.time()


def stored_seqs(db: Path) -> dict[tuple[str, int], list[int]]:
    """(node, incarnation) -> sorted seqs of the stored frames (duplicates would show twice)."""
    import sqlite3
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT node, incarnation, seq FROM frames ORDER BY node, incarnation, seq").fetchall()
    out: dict[tuple[str, int], list[int]] = {}
    for node, inc, seq in rows:
        out.setdefault((node, inc), []).append(seq)
    return out


def assert_complete(db: Path, nodes: list[str]) -> dict[tuple[str, int], list[int]]:
    """Every incarnation of every node has seqs 1..max, each exactly once."""
    got = stored_seqs(db)
    for node in nodes:
        keys = [k for k in got if k[0] == node]
        assert keys, f"nothing stored for {node}"
        for k in keys:
            seqs = got[k]
            assert seqs == list(range(1, len(seqs) + 1)), (
                f"{k}: {len(seqs)} frames, missing {sorted(set(range(1, max(seqs) + 1)) - set(seqs))[:20]}, "
                f"duplicates {len(seqs) - len(set(seqs))}")
    return got


def unacked_at_exit(d: Daemon) -> int:
    """What an agent said it left unacknowledged when it stopped (its last log line)."""
    import re
    m = re.findall(r"stopped \((\d+) frames unacknowledged\)", d.log_path.read_text())
    assert m, f"{d.label} did not log its stop"
    return int(m[-1])


class FrameChild:
    """A hand-made child: a DEALER that speaks the codec, sends frames of one
    incarnation and records the ACKs it gets (for tests of what the root stores)."""

    def __init__(self, port: int, name: str = "probe"):
        self.name = name
        self.port = port
        self.inc = time.time_ns()
        self.ctx = zmq.Context()
        self.sock = self._connect()
        self.acked: set[int] = set()

    def _connect(self):
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.name.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{self.port}")
        return sock

    def reconnect(self) -> None:
        """A new connection with the same routing id and incarnation."""
        self.sock.close(0)
        self.sock = self._connect()

    def heartbeat(self) -> None:
        self.sock.send(codec.encode(make(self.name, self.inc, time.time(), Heartbeat(0))))

    def send(self, seq: int, body, ts: float | None = None) -> None:
        self.sock.send(codec.encode(make(self.name, self.inc, ts or time.time(), body, seq)))

    def hello(self, series=("a", "b")) -> None:
        self.send(1, Hello(1, tuple(series), {"host": self.name}))

    def drain_acks(self) -> set[int]:
        while self.sock.poll(50):
            frame = codec.decode(self.sock.recv())
            if frame.kind is Kind.ACK:
                for e in frame.body.entries:
                    if e.node == self.name and e.incarnation == self.inc:
                        self.acked.update(e.seqs())
        return self.acked

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
