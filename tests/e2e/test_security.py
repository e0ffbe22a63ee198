"""A secured tree (CurveZMQ on every link, a roles file at the root) with the
real daemons: who is refused at the handshake, a key that speaks for another
name, an aggregator forwarding a node of another rack, roles of query clients,
the audit, a key removed while connected, and a rack whose keys change while
it runs with nothing lost."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest
import zmq
from curve_keys import Keys
from harness import assert_complete, kill9, restart, stored_seqs, wait_for

from clumon.cli.client import Client, ClientError
from clumon.proto import codec
from clumon.proto.curve import ClientKeys
from clumon.proto.frames import Data, Hello, make

ROLES = """
[[client]]
key = "ann"
role = "admin"

[[client]]
key = "op1"
role = "operator"
nodes = ["rack-1/*"]

[[client]]
key = "usr"
role = "user"
"""


class Site:
    """root; rack-1 (node-1, node-2) and rack-2 (node-3) each behind its aggregator."""

    def __init__(self, tree, tmp_path, racks: dict[str, list[str]] | None = None):
        self.tree, self.tmp = tree, tmp_path
        self.k = k = Keys(tmp_path)
        racks = racks or {"rack-1": ["node-1", "node-2"], "rack-2": ["node-3"]}
        roles = tmp_path / "roles.toml"
        roles.write_text(ROLES)
        self.root = tree.root(curve=k.curve("root", authorized=k.authorized("root", *racks, "ann", "op1", "usr")),
                              roles=str(roles))
        self.aggs, self.agents = {}, {}
        for rack, nodes in racks.items():
            self.aggs[rack] = tree.aggregator(rack, [self.root.port],
                                              curve=k.curve(rack, "root", k.authorized(rack, *nodes)))
            for n in nodes:
                self.agents[n] = tree.agent(n, [self.aggs[rack].port], curve=k.curve(n, rack))
        self.db = tmp_path / "clumon.db"

    def client(self, who: str = "ann", timeout: float = 10.0) -> Client:
        self.k.gen(who)
        return Client(self.root.query, timeout, key=str(self.k.secret(who)), server_key=str(self.k.public("root")))

    def up(self, *nodes: str) -> None:
        with self.client() as c:
            wait_for(lambda: all({n["name"]: n["state"] for n in c.call("nodes")}.get(x) == "up" for x in nodes),
                     what=f"{nodes} up")


def events(db, kind: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT subject, message FROM events WHERE type = ?", (kind,)).fetchall()


def test_clients_without_keys_or_with_an_unknown_key_get_nothing_and_are_counted(tree, tmp_path):
    site = Site(tree, tmp_path, {"rack-1": ["node-1"]})
    site.up("node-1")
    with pytest.raises(ClientError, match="timeout"):
        with Client(site.root.query, 2.0) as c:  # no key at all
            c.call("nodes")
    with pytest.raises(ClientError, match="timeout"):
        with site.client("mallory", 2.0) as c:  # a key the root does not list
            c.call("nodes")
    with site.client() as c:
        h = wait_for(lambda: (h := c.call("health"))["handshakes_refused"] >= 2 and h, what="refusals counted")
        assert h["curve"] is True and h["unknown_keys_refused"] >= 1
        assert c.call("latest", node="node-1")["values"]  # the tree works with keys on
        assert {n["name"] for n in c.call("nodes")} >= {"node-1", "rack-1"}


def test_a_node_with_node_1s_key_claiming_to_be_node_2_stores_nothing(tree, tmp_path):
    site = Site(tree, tmp_path, {"rack-1": ["node-1"]})
    site.up("node-1")
    k = site.k
    impostor = tree._start("impostor", "clumon.agent", {
        "name": "node-2", "parents": [f"tcp://127.0.0.1:{site.aggs['rack-1'].port}"],
        "state_dir": str(tmp_path / "impostor"), "heartbeat_interval": 0.5, "jitter": 0.2,
        "curve": {"secret_key": str(k.secret("node-1")), "parent_key": str(k.public("rack-1"))}})
    wait_for(lambda: any(s == "node-2" for s, _ in events(site.db, "auth_refused")), timeout=30,
             what="the aggregator's auth_refused event about node-2")
    time.sleep(2.0)
    with site.client() as c:
        assert "node-2" not in {n["name"] for n in c.call("nodes")}
        assert c.call("latest", node="node-1")["values"]
    assert not [key for key in stored_seqs(site.db) if key[0] == "node-2"]
    (subject, message), = [e for e in events(site.db, "auth_refused") if e[0] == "node-2"][:1]
    assert "node-1" in message and "node-2" in message
    impostor.stop()


def test_an_aggregator_forwarding_a_node_of_another_rack_has_it_dropped_at_the_root(tree, tmp_path):
    site = Site(tree, tmp_path)
    site.up("node-1", "node-3")
    k = site.k
    fake_inc = time.time_ns()
    inner = [codec.encode(make("node-3", fake_inc, time.time(), Hello(1, ("x",), {"host": "forged"}), 1)),
             codec.encode(make("node-3", fake_inc, time.time(), Data.from_values(1, [42.0]), 2))]
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, b"rack-1")  # rack-1's own key: it may speak as rack-1, not for rack-2's node
    s.setsockopt(zmq.LINGER, 0)
    ClientKeys.load(k.secret("rack-1"), k.public("root")).secure(s)
    s.connect(f"tcp://127.0.0.1:{site.root.port}")
    try:
        time.sleep(0.5)
        s.send(codec.encode_batch("rack-1", time.time_ns(), time.time(), inner))
        with site.client() as c:
            wait_for(lambda: c.call("health")["subtree_refused"] >= 1, what="the forged frames refused")
    finally:
        ctx.destroy(0)
    assert ("node-3", fake_inc) not in stored_seqs(site.db)
    wait_for(lambda: any("rack-1 forwarded a frame of node-3" in m for _, m in events(site.db, "auth_refused")),
             what="the auth_refused event")
    site.up("node-3")


def test_roles_operator_of_rack_1_user_and_the_audit(tree, tmp_path):
    site = Site(tree, tmp_path)
    site.up("node-1", "node-2", "node-3")
    with site.client("op1") as c:
        wait_for(lambda: c.call("latest", node="node-1")["values"], what="node-1's values")
        got = c.call("set_mask", target="node-1", masks=["1 node_load1 U"])
        assert got
        with pytest.raises(ClientError, match="forbidden") as err:
            c.call("latest", node="node-3")
        assert "op1 (operator of rack-1/*)" in str(err.value) and "node-3" in str(err.value)
        with pytest.raises(ClientError, match="forbidden"):
            c.call("set_mask", target="rack-2", masks=["1 node_load1 U"])
        with pytest.raises(ClientError, match="forbidden"):
            c.call("set_mask", target="*", masks=["1 node_load1 U"])  # some of them are not op1's
        events_seen = c.call("events", since=3600)
        assert events_seen and {e["subject"] for e in events_seen} <= {"node-1", "node-2"}
        with pytest.raises(ClientError, match="forbidden"):
            c.call("rules_reload")
        with pytest.raises(ClientError, match="forbidden"):
            c.call("audit")
    with site.client("usr") as c:
        overview = c.call("overview")
        assert overview["states"].get("up", 0) >= 3 and overview["hottest_cpu"] == [] and overview["events"] == []
        assert {n["name"] for n in c.call("nodes")} >= {"node-1", "node-3"}
        for op, args in (("latest", {"node": "node-1"}), ("series", {"node": "node-1", "series": "node_load1"}),
                         ("events", {}), ("set_mask", {"target": "node-1", "masks": []})):
            with pytest.raises(ClientError, match="forbidden"):
                c.call(op, **args)
    with site.client() as c:  # the admin
        wait_for(lambda: c.call("latest", node="node-3")["values"], what="node-3's values")
        trail = wait_for(lambda: (t := c.call("audit")) and len([e for e in t if e["type"] == "audit"]) >= 9 and t,
                         what="the audit trail")
    rows = [e["attrs"] for e in trail if e["type"] == "audit"]
    assert {"who": "op1", "op": "set_mask", "outcome": "ok"}.items() <= next(
        r for r in rows if r["op"] == "set_mask" and r["outcome"] == "ok").items()
    refused = [(r["who"], r["op"]) for r in rows if r["outcome"].startswith("forbidden")]
    assert ("op1", "latest") in refused and ("op1", "set_mask") in refused and ("usr", "latest") in refused
    assert ("op1", "audit") in refused
    out = subprocess.run([sys.executable, "-m", "clumon.cli", "audit", "--endpoint", site.root.query,
                          "--key", str(site.k.secret("ann")), "--server-key", str(site.k.public("root"))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "set_mask" in out.stdout and "op1" in out.stdout, out.stderr


def test_a_key_removed_while_connected_is_refused_from_then_on(tree, tmp_path):
    site = Site(tree, tmp_path, {"rack-1": ["node-1", "node-2"]})
    site.up("node-1", "node-2")
    (tmp_path / "authorized-rack-1" / "node-2.key").unlink()  # node-2 is revoked
    with site.client() as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}.get("node-2") in ("down", "suspect"),
                 timeout=30, what="node-2 silenced")
        assert {n["name"]: n["state"] for n in c.call("nodes")}["node-1"] == "up"
    assert any(s == "node-2" for s, _ in events(site.db, "auth_refused"))


def test_a_racks_keys_change_while_it_runs_and_nothing_is_lost(tree, tmp_path):
    site = Site(tree, tmp_path, {"rack-1": ["node-1", "node-2"]})
    site.up("node-1", "node-2")
    new = Keys(tmp_path / "new")
    auth = tmp_path / "authorized-rack-1"
    for n in ("node-1", "node-2"):
        new.gen(n)
        shutil.copy(new.public(n), auth / f"{n}.key.new")  # old and new: both are n's for now
    time.sleep(1.5)  # the directory is read again within a second
    for n in ("node-1", "node-2"):  # node-2 is killed: its spool replays under its new key
        site.agents[n] = restart_with_key(site, n, new.secret(n), kill=n == "node-2")
    for n in ("node-1", "node-2"):
        shutil.move(auth / f"{n}.key.new", auth / f"{n}.key")  # the old key is refused from now on
    with site.client() as c:
        for n in ("node-1", "node-2"):  # data of the new incarnations arrives under the new keys
            # a new incarnation's values come with its first frame: until then it may have none
            def load_ts() -> float:
                return (c.call("latest", node=n)["values"].get("node_load1") or (0, 0.0))[1]
            before = load_ts()
            wait_for(lambda: load_ts() > before, what=f"{n} goes on")
        h = c.call("health")
    old = ClientKeys.load(site.k.secret("node-1"), site.k.public("rack-1"))
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, b"node-1")
    s.setsockopt(zmq.LINGER, 0)
    old.secure(s)
    s.connect(f"tcp://127.0.0.1:{site.aggs['rack-1'].port}")
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        from zmq.utils.monitor import recv_monitor_message
        assert mon.poll(5000), "no handshake outcome for the old key"
        assert recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # the old key is gone
    finally:
        s.disable_monitor()
        ctx.destroy(0)
    assert h["auth_refused"] == 0
    for d in list(site.agents.values()):
        d.stop()
    assert_complete(site.db, ["node-1", "node-2"])


def restart_with_key(site: Site, name: str, secret, kill: bool = False) -> object:
    """Stop (or SIGKILL) an agent and start it again with a new secret key (its
    state dir, so its spool, kept)."""
    old = site.agents[name]
    if kill:
        kill9(old)
    else:
        old.stop()
    cfg_path = site.tmp / f"{name}.toml"
    text = cfg_path.read_text().replace(str(site.k.secret(name)), str(secret))
    cfg_path.write_text(text)
    return restart(site.tree, old)
