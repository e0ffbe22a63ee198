"""A running site for the web tests: real root, aggregators and agents (processes on
127.0.0.1), the root's HTTP port on a free port, and an HTTP client that speaks
to it with or without a token. Optionally secured as a site with roles would be:
CurveZMQ keys, a roles file and an ``http_tokens`` file (admin ann, operator olga
of ``agg-1/*``, user uma, and nobody, who has a token but no role)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import Tree, free_port, wait_for

#: name -> role (operator nodes in OPERATOR_NODES); "nobody" is in the tokens file only
ROLES = {"ann": "admin", "olga": "operator", "uma": "user"}
OPERATOR_NODES = ["agg-1/*"]


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Site:
    tree: Tree
    http: int
    nodes: dict[str, str]  # node -> aggregator
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def get(self, path: str, who: str | None = None, *, token: str | None = None, method: str = "GET",
            body: bytes | None = None, headers: dict | None = None) -> Answer:
        """One request, no redirects followed; ``who`` picks that user's token."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers or {}))
        token = token or (self.tokens.get(who) if who else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return Answer(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read())

    def api(self, op: str, who: str | None = None, **params) -> Answer:
        q = urllib.parse.urlencode({k: (",".join(v) if isinstance(v, list) else v) for k, v in params.items()})
        return self.get(f"/api/v1/{op}?{q}", who)

    def ok(self, op: str, who: str | None = None, **params):
        a = self.api(op, who, **params)
        assert a.status == 200, (op, a.status, a.body[:500])
        return a.json()["result"]


def store_history(db: Path, jobs: list[tuple[str, str, str, int, float | None, float | None, str]],
                  figure_days: int = 3) -> None:
    """What a scheduler source would have left in the SQLite file before the root
    opens it, written through ``Store.write``: jobs ``(id, user, state, cores, start,
    end, nodes)`` of cluster ``c1`` (a ``sched_jobs`` EVENT) and, for the last
    ``figure_days`` days, c1's figures every 10 minutes from node-1 (an earlier
    incarnation of it), rolled up as ingest rolls them."""
    import time

    from clumon.agent.collectors.base import series
    from clumon.proto import codec
    from clumon.proto.frames import Data, Hello, Kind, make
    from clumon.root.storage import DictionaryRow, EventRow, FrameRow, NodeRow, Store

    now = time.time()
    store = Store(f"sqlite:///{db}")
    rows = [[jid, user, f"acct-{user}", "batch", state, state.upper(), nodes, cores, (start or now) - 60, start, end]
            for jid, user, state, cores, start, end, nodes in jobs]
    store.write([], [], [EventRow(now, "node-1", "sched_jobs", "jobs",
                                  {"cluster": "c1", "polled": now, "jobs": rows, "last": True}, "node-1", 1, 1)])
    if figure_days:
        names = tuple(sorted([series(m, cluster="c1", partition="") for m in
                              ("sched_utilization_ratio", "sched_occupancy_ratio", "sched_power_on_ratio")]
                             + [series("sched_cores", cluster="c1", partition="", state=s) for s in ("used", "total")]))
        first = now - figure_days * 86400.0
        inc = int(first * 1e9)
        hello = codec.encode(make("node-1", inc, first, Hello(1, names), seq=0))
        store.write([FrameRow("node-1", inc, 0, first, int(Kind.HELLO), 1, hello)],
                    [DictionaryRow("node-1", inc, 1, names, {}, "agent")], [],
                    [NodeRow("node-1", "agg-1", "agg-1", "agent", "down", first, inc, first, {})])
        frames = []
        for i in range(int(figure_days * 144)):
            ts = first + i * 600.0
            used = 20.0 + 10.0 * ((i // 144) % 3)
            values = {n: (used / 40.0 if "utilization" in n else 0.75 if "occupancy" in n else 1.0 if "power_on" in n
                          else used if "used" in n else 40.0) for n in names}
            data = codec.encode(make("node-1", inc, ts, Data.from_values(1, [values[n] for n in names]), seq=i + 1))
            frames.append(FrameRow("node-1", inc, i + 1, ts, int(Kind.DATA), 1, data))
            if len(frames) == 10:  # few frames of one node a batch, as ingest sees them
                store.write(frames)
                frames = []
        if frames:
            store.write(frames)
    store.flush()
    store.close()


#: recorded ``squeue --json`` / ``sinfo -N --json`` answers (and their text forms)
SLURM_DATA = Path(__file__).resolve().parent / "data" / "scheduler"


def fake_slurm(directory: Path) -> Path:
    """``squeue`` and ``sinfo`` that print a recorded busy Slurm cluster (8 jobs of root):
    a scheduler source's ``bin_dir`` without a real Slurm."""
    directory.mkdir(parents=True, exist_ok=True)
    for cmd in ("squeue", "sinfo"):
        script = directory / cmd
        script.write_text(f"#!/bin/sh\ncase \"$*\" in\n  *--json*) cat {SLURM_DATA / f'slurm_busy_{cmd}.json'} ;;\n"
                          f"  *) cat {SLURM_DATA / f'slurm_busy_{cmd}.txt'} ;;\nesac\n")
        script.chmod(0o755)
    return directory


#: an alert rule that fires for any node down (the overview lists firing alerts)
NODE_DOWN_RULE = """evaluation_interval = 0.5
[[rule]]
name = "NodeDown"
state = ["down", "unreachable"]
for = "1s"
severity = "critical"
summary = "{node} is {state}"
"""


def start_site(tmp: Path, *, secured: bool, agents_per_agg: int = 2, aggregators: int = 2,
               jobs: list | None = None, alerts: str | None = None, scheduler_on: str | None = None,
               logs_on: str | None = None) -> Site:
    """Root + aggregators + agents, waited for until every node is up and has a stored
    point; secured: CurveZMQ, roles and tokens."""
    saved = os.environ.get("CLUMON_TEST_CURVE")
    os.environ["CLUMON_TEST_CURVE"] = "1" if secured else "0"
    try:
        tree = Tree(tmp)
    finally:
        if saved is None:
            os.environ.pop("CLUMON_TEST_CURVE", None)
        else:
            os.environ["CLUMON_TEST_CURVE"] = saved
    http = free_port()
    cfg: dict = {"http": f"127.0.0.1:{http}", "rollup_flush": 1.0, "maintain_interval": 1.0}
    tokens: dict[str, str] = {}
    if secured:
        roles = tmp / "roles.toml"
        roles.write_text("".join(
            f'[[client]]\nkey = "{name}"\nrole = "{role}"\n'
            + (f"nodes = {json.dumps(OPERATOR_NODES)}\n" if role == "operator" else "") + "\n"
            for name, role in ROLES.items()))
        # each person's token made as a site makes it: from their key, by 'clumon keys token'
        tokens_file = tmp / "http_tokens"
        for name in [*ROLES, "nobody"]:
            tree.keys.gen(name)
            made = subprocess.run([sys.executable, "-m", "clumon.cli", "keys", "token", name, "--dir",
                                   str(tree.keys.dir), "--append", str(tokens_file)],
                                  capture_output=True, text=True, timeout=60)
            assert made.returncode == 0, made.stderr
            tokens[name] = made.stdout.strip()
        cfg.update(roles=str(roles), http_tokens=str(tokens_file))
    if jobs:
        store_history(tmp / "clumon.db", jobs)
    if alerts:
        (tmp / "alerts.toml").write_text(alerts)
        cfg["alerts"] = str(tmp / "alerts.toml")
    site = None
    try:
        root = tree.root(**cfg)
        nodes = {}
        for a in range(1, aggregators + 1):
            agg = tree.aggregator(f"agg-{a}", [root.port])
            for i in range(agents_per_agg):
                name = f"node-{(a - 1) * agents_per_agg + i + 1}"
                extra = {}
                if name == logs_on:  # this node tails tmp/logs/app.log (source "app")
                    (tmp / "logs").mkdir(exist_ok=True)
                    extra.update(log=[{"path": str(tmp / "logs" / "app.log"), "source": "app"}],
                                 log_poll_interval=0.2)
                if name == scheduler_on:  # this node polls a (recorded) Slurm cluster "hpc"
                    extra["scheduler"] = {"kind": "slurm", "cluster": "hpc", "interval": 1.0,
                                          "bin_dir": str(fake_slurm(tmp / "slurm-bin"))}
                tree.agent(name, [agg.port], **extra)
                nodes[name] = f"agg-{a}"
        site = Site(tree, http, nodes, tokens)
        admin = "ann" if secured else None
        wait_for(lambda: all(n["state"] == "up" for n in site.ok("nodes", admin) if n["name"] in nodes)
                 and {n["name"] for n in site.ok("nodes", admin)} >= set(nodes), timeout=60, what="every node up")
        wait_for(lambda: all(site.ok("series", admin, node=n, series="node_load1", since="5m")["points"]
                             for n in nodes), timeout=60, what="a stored point of every node")
        return site
    except BaseException:
        tree.stop_all()
        raise
