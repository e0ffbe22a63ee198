"""Alerts end to end: a real root, aggregator and agents as processes, a real SMTP
server (aiosmtpd) and a real HTTP webhook receiver. A series that crosses its
threshold fires once after ``for`` (one email, one webhook), repeats, resolves
only below its recovery threshold; a silence holds notifications back and its
expiry lets them out; an aggregator killed for longer than ``down_after`` gives
one notification for its subtree; a root restart while an alert fires tells
nothing twice; an SMTP server that is down delays email, not webhooks or ingest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from alert_receivers import mailbox, webhook  # noqa: F401 - fixtures
from harness import kill9, restart, wait_for

from clumon.cli.client import Client
from clumon.cli.daemon import free_port


def temperature_plugin(directory: Path, value_file: Path) -> Path:
    directory.mkdir(exist_ok=True)
    script = directory / "temperature"
    script.write_text(f"#!/bin/sh\necho \"test_temperature $(cat {value_file})\"\n")
    script.chmod(0o755)
    return directory


def clumon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clumon.cli", *args], capture_output=True, text=True, timeout=60)


def rules_file(path: Path, receivers: str, repeat: str) -> Path:
    path.write_text(f"""
evaluation_interval = 0.3
[[rule]]
name = "Hot"
series = "test_temperature"
above = 80
recover_below = 70
for = "2s"
severity = "critical"
summary = "{{node}} at {{value}} degrees"
[[rule]]
name = "NodeDown"
state = ["down", "unreachable"]
for = "1s"
[[rule]]
name = "AggregatorUnreachable"
role = "aggregator"
state = ["down", "unreachable"]
for = "1s"
severity = "critical"
{receivers}
[[route]]
receiver = "ops"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "{repeat}"
""")
    return path


def ops_receiver(smtp_port: int, hook: str) -> str:
    return f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "clumon@test"
timeout = 2
[[receiver]]
name = "ops"
email = ["ops@test"]
webhook = "{hook}"
"""


def statuses(bodies: list[dict], name: str) -> list[str]:
    return [b["status"] for b in bodies if b["commonLabels"].get("alertname") == name]


def test_a_series_alert_fires_repeats_is_silenced_and_resolves(tree, tmp_path, mailbox, webhook):
    value = tmp_path / "temperature"
    value.write_text("50")
    plugins = temperature_plugin(tmp_path / "plugins", value)
    metrics_port = free_port()
    root = tree.root(alerts=str(rules_file(tmp_path / "alerts.toml", ops_receiver(mailbox.port, webhook.url), "5s")),
                     metrics=f"127.0.0.1:{metrics_port}")
    agg = tree.aggregator("agg-a", [root.port])
    tree.agent("node-1", [agg.port], plugin_dir=str(plugins), plugin_interval=0.3, plugin_timeout=2.0)
    endpoint = ["--endpoint", root.query]
    with Client(root.query) as c:
        wait_for(lambda: "test_temperature" in c.call("latest", node="node-1")["values"], what="the plugin's value")
        time.sleep(1.0)
        assert c.call("alerts")["alerts"] == [] and webhook.bodies == []
        value.write_text("90")
        pending = wait_for(lambda: c.call("alerts")["alerts"], what="the alert, pending")
        assert pending[0]["state"] == "pending"
        fired_at = wait_for(lambda: [a for a in c.call("alerts", state="firing")["alerts"]], what="firing")[0]
        assert fired_at["fired_at"] - fired_at["started"] >= 2.0  # `for`
        wait_for(lambda: webhook.bodies and mailbox.messages, what="one webhook and one email")
        assert statuses(webhook.bodies, "Hot") == ["firing"] and len(mailbox.messages) == 1
        assert mailbox.messages[0]["Subject"] == "[FIRING:1] Hot"
        body = webhook.bodies[0]["alerts"][0]
        assert body["labels"]["node"] == "node-1" and body["annotations"]["summary"] == "node-1 at 90 degrees"
        # once a repeat_interval (5 s) has passed, and not before
        time.sleep(2.5)
        assert len(webhook.bodies) == 1
        wait_for(lambda: len(webhook.bodies) == 2, timeout=10, what="the repeat")
        assert statuses(webhook.bodies, "Hot") == ["firing", "firing"]
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'ALERTS{alertname="Hot",alertstate="firing",node="node-1",severity="critical"} 1' in scrape
        # hysteresis: below the threshold, not below the recovery one
        value.write_text("75")
        time.sleep(2.0)
        assert [a["state"] for a in c.call("alerts")["alerts"]] == ["firing"]
        value.write_text("60")
        wait_for(lambda: "resolved" in statuses(webhook.bodies, "Hot"), what="the resolved notification")
        told = len(webhook.bodies)
        # a silence holds the next firing back; its expiry lets it out
        out = clumon("silence", "add", "alertname=Hot", "--for", "1h", "--reason", "maintenance", *endpoint)
        assert out.returncode == 0 and "silence 1 until" in out.stdout, out.stderr
        value.write_text("95")
        muted = wait_for(lambda: [a for a in c.call("alerts", state="firing")["alerts"]], what="firing again")[0]
        assert muted["muted"] == "silenced:1"
        time.sleep(1.5)
        assert len(webhook.bodies) == told
        out = clumon("silence", "list", "--json", *endpoint)
        assert [s["reason"] for s in json.loads(out.stdout)] == ["maintenance"]
        assert clumon("silence", "expire", "1", *endpoint).returncode == 0
        wait_for(lambda: len(webhook.bodies) > told, what="the notification once the silence is gone")
        assert statuses(webhook.bodies, "Hot")[-1] == "firing"
        out = clumon("alerts", *endpoint)
        assert out.returncode == 0 and "Hot" in out.stdout and "node-1" in out.stdout
        events = [e for e in c.call("events", kind="alert") if e["attrs"].get("alertname") == "Hot"]
        assert {e["attrs"]["state"] for e in events} == {"firing", "resolved"}


def test_a_dead_aggregator_is_one_notification_and_a_restart_tells_nothing_twice(tree, tmp_path, webhook):
    dead_smtp = free_port()  # email goes nowhere: webhooks and ingest go on
    path = rules_file(tmp_path / "alerts.toml", ops_receiver(dead_smtp, webhook.url), "1h")
    root = tree.root(alerts=str(path), down_after=2.0)
    agg = tree.aggregator("agg-a", [root.port], down_after=2.0)
    for i in range(1, 4):
        tree.agent(f"node-{i}", [agg.port])
    with Client(root.query) as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}.get("node-3") == "up", what="the tree")
        def stored() -> int:
            h = c.call("health")
            return h["frames_stored"] + h["own_frames_stored"]

        before = stored()
        kill9(agg)
        wait_for(lambda: webhook.bodies, timeout=30, what="a notification of the dead aggregator")
        time.sleep(3.0)  # the nodes' alerts fire too, folded: nothing more is sent
        names = [a["labels"]["alertname"] for b in webhook.bodies for a in b["alerts"]]
        assert names == ["AggregatorUnreachable"], webhook.bodies
        told = webhook.bodies[0]["alerts"][0]
        assert "3 alerts of nodes behind agg-a" in told["annotations"]["folded"]
        firing = c.call("alerts", state="firing")["alerts"]
        assert sorted(a["labels"]["node"] for a in firing) == ["agg-a", "node-1", "node-2", "node-3"]
        assert {a["muted"] for a in firing if a["labels"]["node"] != "agg-a"} == {"folded:agg-a"}
        health = c.call("health")
        assert health["notifications_failed"] >= 1  # the email, retried in its own task
        # ingest went on (the root's own series and events at least; its health sample
        # comes every health_interval, so a loaded box may need a moment)
        wait_for(lambda: stored() > before, timeout=30, what="frames stored after the aggregator died")
    root.stop()
    root = restart(tree, root)
    with Client(root.query) as c:
        wait_for(lambda: c.call("alerts", state="firing")["alerts"], what="the firing alerts read back")
        time.sleep(3.0)
        assert len(webhook.bodies) == 1  # nothing told twice
        assert {a["labels"]["node"] for a in c.call("alerts", state="firing")["alerts"]} >= {"agg-a"}
        # a bad file on reload is refused and the rules in force stay
        good = path.read_text()
        path.write_text(good + '\n[[rule]]\nname = "Broken"\nseries = "x"\nabove = "high"\n')
        out = clumon("rules", "reload", "--endpoint", root.query)
        assert out.returncode == 1 and "rule 'Broken': key 'above'" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert c.call("health")["alert_rules"] == 3
        path.write_text(good)
        assert clumon("rules", "reload", "--endpoint", root.query).returncode == 0
        assert clumon("rules", "check", str(path)).returncode == 0


def test_a_log_line_that_names_an_oom_kill_is_an_alert_by_webhook_and_email(tree, tmp_path, mailbox, webhook):
    """Log watch meets alerts (IHEP's "real-time email alerts" from logs): the agent's
    default oom_kill rule marks the line, the root stores it with a log_match event,
    and an event rule on that event notifies, once per line."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = tmp_path / "alerts.toml"
    path.write_text(f"""
evaluation_interval = 0.3
[[rule]]
name = "OomKill"
event = "log_match"
match = {{ rule = "oom_kill" }}
resolve_after = "1h"
severity = "critical"
summary = "{{node}}: {{message}}"
{ops_receiver(mailbox.port, webhook.url)}
[[route]]
receiver = "ops"
group_wait = "0s"
""")
    root = tree.root(alerts=str(path))
    agg = tree.aggregator("agg-a", [root.port])
    tree.agent("node-1", [agg.port], log=[{"path": str(logs / "*.log"), "source": "kern"}], log_poll_interval=0.2)
    with Client(root.query) as c:
        wait_for(lambda: {n["name"]: n["state"] for n in c.call("nodes")}.get("node-1") == "up", what="the tree")
        with open(logs / "kern.log", "a") as f:
            f.write("Dec  5 20:00:01 node-1 kernel: all is well\n"
                    "Dec  5 20:00:02 node-1 kernel: Out of memory: Killed process 4242 (solver) total-vm:1GB\n")
        body = wait_for(lambda: webhook.bodies and webhook.bodies[0], timeout=30, what="the OOM notification")
        alert = body["alerts"][0]
        assert alert["labels"]["alertname"] == "OomKill" and alert["labels"]["node"] == "node-1"
        assert "Killed process 4242" in alert["annotations"]["summary"]
        mail = wait_for(lambda: mailbox.messages and mailbox.messages[0], timeout=30, what="the OOM email")
        assert "OomKill" in mail["Subject"]
        events = c.call("events", kind="log_match")
        assert [e["attrs"]["rule"] for e in events] == ["oom_kill"]  # one line, one event; the quiet one none
        lines = c.call("logs", node="node-1", grep="Killed process")["lines"]
        assert len(lines) == 1 and lines[0]["source"] == "kern"
