"""The alert engine on a real live view (registry and latest-values cache fed with
real frames), a real SQLite file and real receivers (an HTTP webhook receiver and
aiosmtpd), with the clock in the test's hands: lives of alerts, grouping and
repeats, restarts, silences, inhibition, subtree folding, every kind of rule."""

from __future__ import annotations

import asyncio
import time

import pytest

from alert_receivers import mailbox, wait_until, webhook  # noqa: F401 - fixtures
from clumon.proto.frames import Data, Hello, make
from clumon.proto.tree import LatestCache
from clumon.root.alerts.engine import AlertEngine
from clumon.root.registry import Registry
from clumon.root.storage import EventRow, Store

T0 = 1_800_000_000.0
DISK_ROOT = 'node_disk_used_ratio{mount="/"}'


class Site:
    """A live view, a store and an engine over them, on a clock the test moves."""

    def __init__(self, tmp_path, rules: str, receivers: str = ""):
        self.now = T0
        self.path = tmp_path / "alerts.toml"
        self.path.write_text(rules + receivers)
        self.db = f"sqlite:///{tmp_path / 'root.db'}"
        self.store = Store(self.db)
        self.registry, self.cache = Registry(), LatestCache()
        self.notes: list[tuple] = []
        self.loop = asyncio.new_event_loop()
        self.engine = self._engine()
        self.seq = 0

    def _engine(self) -> AlertEngine:
        engine = AlertEngine(self.path, self.registry, self.cache, self.store,
                             lambda *a: self.notes.append(a), clock=lambda: self.now)
        self.loop.run_until_complete(self._start(engine))
        return engine

    async def _start(self, engine: AlertEngine) -> None:
        self.task = asyncio.ensure_future(engine.run())
        await engine._ready.wait()

    def restart(self) -> None:
        self.stop_engine()
        self.engine = self._engine()

    def stop_engine(self) -> None:
        self.task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))

    def node(self, name: str, values: dict[str, float] | None = None, path: str = "", role: str = "agent",
             cores: int = 4) -> None:
        self.registry.hello(name, path, 1, self.now, role, {"cores": cores})
        self.registry.nodes[name].role = role
        if values:
            self.values(name, values)

    def values(self, name: str, values: dict[str, float]) -> None:
        names = tuple(values)
        key = (name, 1, len(names))
        if key not in self.cache.dictionaries or self.cache.dictionaries[key] != names:
            self.cache.hello(make(name, 1, self.now, Hello(len(names), names), seq=0))
        self.seq += 1
        self.cache.data(make(name, 1, self.now, Data.from_values(len(names), list(values.values())), seq=self.seq))

    def state(self, name: str, state: str) -> None:
        self.registry.nodes[name].state = state

    def tick(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self.loop.run_until_complete(self.engine.evaluate_once())

    def settle(self, seconds: float = 0.3) -> None:
        """Let the notifier's tasks deliver (real sockets, real threads)."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def alerts(self) -> dict[str, dict]:
        return {a["labels"]["alertname"] + ":" + a["labels"].get("node", ""): a for a in self.engine.open_alerts()}

    def close(self) -> None:
        self.stop_engine()
        self.loop.close()
        self.store.close()


@pytest.fixture
def site_factory(tmp_path):
    made = []

    def make_site(rules: str, receivers: str = "") -> Site:
        s = Site(tmp_path, rules, receivers)
        made.append(s)
        return s

    yield make_site
    for s in made:
        s.close()


def hook_receiver(url: str, group_wait="0s", group_interval="30s", repeat_interval="1h", group_by='["alertname"]'):
    return f"""
[[receiver]]
name = "hook"
webhook = "{url}"
[[route]]
receiver = "hook"
group_by = {group_by}
group_wait = "{group_wait}"
group_interval = "{group_interval}"
repeat_interval = "{repeat_interval}"
"""


DISK = """
[[rule]]
name = "DiskFull"
series = 'node_disk_used_ratio{mount=*}'
above = 0.95
recover_below = 0.90
for = "60s"
severity = "critical"
summary = "{mount} on {node} is {value} full"
"""


def test_pending_firing_resolved_with_for_and_hysteresis(site_factory, webhook):
    s = site_factory(DISK, hook_receiver(webhook.url))
    s.node("n1", {DISK_ROOT: 0.5})
    s.tick()
    assert s.alerts() == {}
    s.values("n1", {DISK_ROOT: 0.97})
    s.tick(10)
    a = s.alerts()["DiskFull:n1"]
    assert a["state"] == "pending" and a["labels"]["mount"] == "/" and a["labels"]["severity"] == "critical"
    s.tick(30)
    assert s.alerts()["DiskFull:n1"]["state"] == "pending"  # 30 s of 60
    s.tick(31)
    assert s.alerts()["DiskFull:n1"]["state"] == "firing"
    assert [n[0] for n in s.notes] == ["alert"] and s.notes[0][3]["state"] == "firing"
    s.settle()
    body = wait_until(lambda: webhook.bodies, what="the firing webhook")[0]
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["alerts"][0]["labels"]["alertname"] == "DiskFull"
    assert body["alerts"][0]["annotations"]["summary"] == "/ on n1 is 0.97 full"
    s.values("n1", {DISK_ROOT: 0.93})  # below 0.95, above the recovery 0.90
    s.tick(31)
    assert s.alerts()["DiskFull:n1"]["state"] == "firing"
    s.values("n1", {DISK_ROOT: 0.89})
    s.tick(10)  # resolved, and told at once: group_interval (30 s) has passed since the last time
    assert [n[3]["state"] for n in s.notes] == ["firing", "resolved"]
    s.settle()
    bodies = wait_until(lambda: len(webhook.bodies) == 2 and webhook.bodies, what="the resolved webhook")
    assert bodies[1]["status"] == "resolved" and bodies[1]["alerts"][0]["status"] == "resolved"
    assert bodies[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    s.tick()
    assert s.alerts() == {}  # told resolved and delivered: done with (its row stays in SQL)
    rows = s.store.alerts_sql(lambda c, i: __import__("clumon.root.storage.alerts", fromlist=["x"]).history(c, 0))
    assert [(r["state"], r["notified"], r["notifications"]) for r in rows] == [("resolved", "resolved", 2)]


def test_a_group_waits_then_repeats_and_a_restart_tells_nothing_twice(site_factory, webhook):
    s = site_factory(DISK, hook_receiver(webhook.url, group_wait="20s", repeat_interval="300s"))
    for n in ("n1", "n2"):
        s.node(n, {DISK_ROOT: 0.99})
    s.tick()
    s.tick(61)  # both fire
    s.tick(10)
    s.settle()
    assert webhook.bodies == []  # group_wait: 20 s from firing
    s.tick(11)
    s.settle()
    body = wait_until(lambda: webhook.bodies, what="one notification for the group")[0]
    assert sorted(a["labels"]["node"] for a in body["alerts"]) == ["n1", "n2"]
    assert body["groupLabels"] == {"alertname": "DiskFull"}
    s.restart()  # the same database: firing alerts and when they were told come back
    for n in ("n1", "n2"):
        s.values(n, {DISK_ROOT: 0.99})
    s.tick(10)
    s.settle()
    assert len(webhook.bodies) == 1 and {a["state"] for a in s.alerts().values()} == {"firing"}
    assert not [n for n in s.notes if n[3].get("state") == "firing" and n[2].startswith("DiskFull") and
                s.notes.index(n) >= 2]  # no new firing transition after the restart
    s.tick(300)
    s.settle()
    wait_until(lambda: len(webhook.bodies) == 2, what="the repeat after repeat_interval")


def test_a_silence_stops_notifications_and_its_end_resumes_them(site_factory, webhook):
    s = site_factory(DISK, hook_receiver(webhook.url))
    s.node("n1", {DISK_ROOT: 0.99})
    s.loop.run_until_complete(s.engine._ready.wait())
    got = s.loop.run_until_complete(s.engine.add_silence(["alertname=DiskFull", "node=~n[0-9]+"], 120, "disk swap",
                                                         "ann"))
    assert got["id"] == 1 and got["matchers"] == ["alertname=DiskFull", "node=~n[0-9]+"]
    s.tick()
    s.tick(61)
    s.settle()
    assert s.alerts()["DiskFull:n1"]["state"] == "firing"
    assert s.alerts()["DiskFull:n1"]["muted"] == "silenced:1" and webhook.bodies == []
    s.tick(60)  # the silence ends at T0 + 120
    s.settle()
    wait_until(lambda: webhook.bodies, what="the notification once the silence ended")
    again = s.loop.run_until_complete(s.engine.add_silence(["alertname=DiskFull"], 3600, "", ""))
    assert s.loop.run_until_complete(s.engine.expire_silence(again["id"])) is True
    assert s.loop.run_until_complete(s.engine.expire_silence(again["id"])) is False


FOLD = """
[[rule]]
name = "NodeDown"
state = ["down", "unreachable"]
severity = "critical"
[[rule]]
name = "AggregatorUnreachable"
role = "aggregator"
state = ["down", "unreachable"]
severity = "critical"
"""


def test_an_unreachable_aggregator_folds_its_nodes_into_one_notification(site_factory, webhook):
    s = site_factory(FOLD, hook_receiver(webhook.url, group_by="[]"))
    s.node("rack-7", role="aggregator")
    for i in range(40):
        s.node(f"n{i}", path="rack-7")
    s.node("lonely")
    s.tick()
    s.state("rack-7", "down")
    for i in range(40):
        s.state(f"n{i}", "unreachable")
    s.state("lonely", "down")
    s.tick(1)
    s.settle()
    body = wait_until(lambda: webhook.bodies, what="one notification")[0]
    told = {a["labels"]["node"]: a for a in body["alerts"]}
    assert set(told) == {"rack-7", "lonely"}  # not 40 more
    assert "40 alerts of nodes behind rack-7" in told["rack-7"]["annotations"]["folded"]
    muted = {k: a["muted"] for k, a in s.alerts().items() if a["muted"]}
    assert len(muted) == 40 and set(muted.values()) == {"folded:rack-7"}


def test_a_critical_alert_inhibits_a_warning_on_the_same_node(site_factory, webhook):
    rules = DISK + """
[[rule]]
name = "DiskFilling"
series = 'node_disk_used_ratio{mount=*}'
above = 0.8
for = "60s"
severity = "warning"
[[inhibit]]
source_match = { severity = "critical" }
target_match = { severity = "warning" }
equal = ["node"]
"""
    s = site_factory(rules, hook_receiver(webhook.url, group_by="[]"))
    s.node("n1", {DISK_ROOT: 0.99})
    s.node("n2", {DISK_ROOT: 0.85})
    s.tick()
    s.tick(61)
    s.settle()
    body = wait_until(lambda: webhook.bodies, what="a notification")[0]
    assert sorted((a["labels"]["alertname"], a["labels"]["node"]) for a in body["alerts"]) == [
        ("DiskFilling", "n2"), ("DiskFull", "n1")]
    assert s.alerts()["DiskFilling:n1"]["muted"] == "inhibited"


def test_event_absent_rate_and_per_core_rules(site_factory):
    rules = """
[[rule]]
name = "Spool"
role = "any"
event = "spool_overflow"
match = { dropped = "*" }
resolve_after = "60s"
summary = "{node}: {message}"
[[rule]]
name = "Silent"
absent = "node_load1"
window = "90s"
[[rule]]
name = "Forking"
series = "node_forks_total"
rate = true
above = 100
[[rule]]
name = "LoadPerCore"
series = "node_load1"
per_core = true
above = 2
"""
    s = site_factory(rules)
    s.node("n1", {"node_load1": 9.0, "node_forks_total": 1000.0}, cores=4)
    s.tick()
    assert s.alerts()["LoadPerCore:n1"]["value"] == 9.0 / 4
    assert "Forking:n1" not in s.alerts()  # one sample: no rate yet
    s.now += 10
    s.values("n1", {"node_load1": 4.0, "node_forks_total": 3000.0})  # 200 forks/s; load 1 per core
    s.tick()
    assert s.alerts()["Forking:n1"]["value"] == 200.0
    assert "LoadPerCore:n1" not in s.alerts() and told(s, "LoadPerCore") == ["firing", "resolved"]
    s.engine.saw_events([EventRow(s.now, "n1", "spool_overflow", "dropped 5", {"dropped": 5}, "n1", 1, 1),
                         EventRow(s.now, "n1", "spool_overflow", "no attrs", {}, "n1", 1, 2)])
    s.tick(1)
    assert s.alerts()["Spool:n1"]["annotations"]["summary"] == "n1: dropped 5"
    s.tick(100)  # load1 not sent for 101 s; the spool event is 100 s old
    assert s.alerts()["Silent:n1"]["state"] == "firing" and told(s, "Spool") == ["firing", "resolved"]
    s.values("n1", {"node_load1": 1.0, "node_forks_total": 3000.0})
    s.tick(1)
    assert told(s, "Silent") == ["firing", "resolved"]


def told(s: Site, rule: str) -> list[str]:
    """The transitions of a rule's alerts stored as ``alert`` events."""
    return [n[3]["state"] for n in s.notes if n[0] == "alert" and n[3].get("alertname") == rule]


def test_a_window_rule_reads_the_one_minute_rollups(site_factory, tmp_path):
    from test_history import INC, data, hello, nodes_rows  # frames as the root stores them

    rules = """
[[rule]]
name = "LoadAvg"
series = "node_load1"
window = "10m"
agg = "avg"
above = 1.5
"""
    s = site_factory(rules)
    now = float(int(time.time()) // 60 * 60)
    s.now = now
    d, h = hello("n1")
    s.store.write([h], [d], [], nodes_rows())
    frames = [data("n1", i + 1, now - 600 + i * 20, [1.0 + (i % 2) * 2, 0.5, 1.0]) for i in range(30)]
    s.store.write(frames)
    s.store.flush()
    s.node("n1", {"node_load1": 0.0})
    s.registry.nodes["n1"].path = "agg-a"
    s.tick()
    a = s.alerts()["LoadAvg:n1"]
    assert a["state"] == "firing" and a["value"] == pytest.approx(2.0)
    assert INC


def test_email_waits_for_an_smtp_server_that_is_down_and_nothing_else_does(site_factory, webhook):
    from alert_receivers import Mailbox
    from clumon.cli.daemon import free_port

    port = free_port()  # nothing listens there yet
    receivers = f"""
[smtp]
host = "127.0.0.1"
port = {port}
from = "clumon@test"
timeout = 2
[[receiver]]
name = "ops"
email = ["ops@test", "oncall@test"]
webhook = "{webhook.url}"
[[route]]
receiver = "ops"
group_wait = "0s"
"""
    s = site_factory(DISK, receivers)
    s.node("n1", {DISK_ROOT: 0.99})
    s.tick()
    s.tick(61)
    s.settle(0.5)
    wait_until(lambda: webhook.bodies, what="the webhook, whatever SMTP does")
    failures = wait_until(lambda: [n for n in s.notes if n[3].get("what") == "delivery_failed"],
                          what="the email failure as an event")
    assert failures[0][3]["channel"] == "email" and failures[0][3]["receiver"] == "ops"
    assert s.engine.figures()["notifications_failed"] >= 1
    box = Mailbox(port)
    try:
        deadline = time.monotonic() + 15
        while not box.messages and time.monotonic() < deadline:
            s.settle(0.2)  # the channel retries on its own (1 s, 2 s, 4 s ...)
        assert box.messages, "the email after the server came up"
        mail = box.messages[0]
        assert mail["Subject"] == "[FIRING:1] DiskFull" and mail["To"] == "ops@test, oncall@test"
        assert "/ on n1 is 0.99 full" in mail.get_payload()
        assert len(webhook.bodies) == 1  # the webhook was not sent again with it
    finally:
        box.stop()


def test_a_command_receiver_gets_the_alert_in_its_environment_and_stdin(site_factory, tmp_path):
    out = tmp_path / "paged"
    script = tmp_path / "page.sh"
    script.write_text(f'#!/bin/sh\n{{ echo "$CLUMON_ALERT_STATUS $CLUMON_ALERT_NAMES $CLUMON_ALERT_NODES"; cat; }} > {out}\n')
    script.chmod(0o755)
    receivers = f"""
[[receiver]]
name = "pager"
command = ["{script}"]
"""
    s = site_factory(DISK.replace('for = "60s"', 'for = "0s"'), receivers)
    s.node("n7", {DISK_ROOT: 0.99})
    s.tick()
    s.tick(31)  # one receiver and no route: everything goes to it, after the default group_wait (30 s)
    deadline = time.monotonic() + 10
    while not (out.exists() and out.read_text().rstrip().endswith("}")) and time.monotonic() < deadline:
        s.settle(0.1)
    first, body = out.read_text().split("\n", 1)
    assert first == "firing DiskFull n7"
    assert '"alertname": "DiskFull"' in body and '"version": "4"' in body
