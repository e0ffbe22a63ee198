"""A running site for the web tests: real root, aggregators and agents (processes on
127.0.0.1), the root's HTTP port on a free port, and an HTTP client that speaks
to it with or without a token. Optionally secured as a site with roles would be:
CurveZMQ keys, a roles file and an ``http_tokens`` file (admin ann, operator olga
of ``agg-1/*``, user uma, and nobody, who has a token but no role)."""

from __future__ import annotations

import json
import os
import secrets
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


def store_jobs(db: Path, jobs: list[tuple[str, str, str, int, float | None, float | None, str]]) -> None:
    """Jobs ``(id, user, state, cores, start, end, nodes)`` of cluster ``c1`` in the
    SQLite file, as the root stores a scheduler source's ``sched_jobs`` EVENT
    (through ``Store.write``), before the root opens it."""
    import time

    from clumon.root.storage import EventRow, Store

    now = time.time()
    rows = [[jid, user, f"acct-{user}", "batch", state, state.upper(), nodes, cores, (start or now) - 60, start, end]
            for jid, user, state, cores, start, end, nodes in jobs]
    store = Store(f"sqlite:///{db}")
    store.write([], [], [EventRow(now, "login1", "sched_jobs", "jobs",
                                  {"cluster": "c1", "polled": now, "jobs": rows, "last": True}, "login1", 1, 1)])
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
               jobs: list | None = None, alerts: str | None = None, scheduler_on: str | None = None) -> Site:
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
        tokens = {name: secrets.token_hex(24) for name in [*ROLES, "nobody"]}
        tokens_file = tmp / "http_tokens"
        tokens_file.write_text("".join(f"{n} {t}\n" for n, t in tokens.items()))
        cfg.update(roles=str(roles), http_tokens=str(tokens_file))
    if jobs:
        store_jobs(tmp / "clumon.db", jobs)
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
