"""The alert engine where lives of alerts meet changes: a reload that changes a
rule's labels, a series that leaves its node, an alert that fires again before
its resolution was told, notifications still queued at a reload or a stop, a
webhook that answers 4xx, the engine's own events, a command receiver that is
still running at a stop. Real live view, real SQLite file, real receivers."""

from __future__ import annotations

import os
import time

from alert_receivers import wait_until, webhook  # noqa: F401 - fixtures
from clumon.root.storage import EventRow
from clumon.root.storage import alerts as rows
from test_alert_engine import DISK, DISK_ROOT, hook_receiver, site_factory, told  # noqa: F401 - fixtures

FAST = DISK.replace('for = "60s"', 'for = "0s"')


def fire_and_tell(s, webhook) -> None:
    """n1's disk full: the alert fires and its notification reaches the webhook."""
    s.node("n1", {DISK_ROOT: 0.99})
    s.tick()
    s.tick(1)
    s.settle()
    wait_until(lambda: webhook.bodies, what="the firing notification")


def fire_until_refused(s, webhook) -> None:
    """n1's disk full while the webhook refuses: one delivery refused."""
    s.node("n1", {DISK_ROOT: 0.99})
    s.tick()
    s.tick(31)
    wait_until(lambda: webhook.refused, what="a refused delivery")


def settle_until(s, cond, seconds: float = 10.0):
    """Let the engine's tasks run until ``cond()`` holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        s.settle(0.1)
    return cond()


def history(s) -> list[dict]:
    return sorted(s.store.alerts_sql(lambda c, i: rows.history(c, 0)), key=lambda r: r["started"])


def test_a_reload_that_changes_a_rules_severity_ends_the_old_alert_and_opens_the_new(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url, group_interval="0s"))
    fire_and_tell(s, webhook)
    old = s.alerts()["DiskFull:n1"]
    assert old["state"] == "firing" and old["labels"]["severity"] == "critical"
    s.path.write_text(FAST.replace('severity = "critical"', 'severity = "warning"') +
                      hook_receiver(webhook.url, group_interval="0s"))
    s.loop.run_until_complete(s.engine.reload())
    s.tick(1)
    now = s.alerts()["DiskFull:n1"]
    assert now["labels"]["severity"] == "warning" and now["fingerprint"] != old["fingerprint"]
    assert told(s, "DiskFull") == ["firing", "firing", "resolved"]  # the new one, then the old one's end
    s.settle()
    bodies = wait_until(lambda: len(webhook.bodies) >= 2 and webhook.bodies, what="the old alert told resolved")
    resolved = [a for b in bodies for a in b["alerts"] if a["status"] == "resolved"]
    assert [a["labels"]["severity"] for a in resolved] == ["critical"]
    s.tick(1)
    states = {(r["fingerprint"], r["state"]) for r in history(s)}
    assert states == {(old["fingerprint"], "resolved"), (now["fingerprint"], "firing")}


def test_a_series_that_leaves_its_node_ends_its_alert_and_a_node_not_judged_keeps_it(site_factory):
    s = site_factory(FAST)
    s.node("n1", {DISK_ROOT: 0.99, "node_load1": 1.0})
    s.node("n2", {DISK_ROOT: 0.99})
    s.tick()
    assert {k for k, a in s.alerts().items() if a["state"] == "firing"} == {"DiskFull:n1", "DiskFull:n2"}
    s.state("n2", "down")  # its values are not fresh: not judged, its alert stays as it is
    s.values("n1", {"node_load1": 1.0})  # a new dictionary without the disk
    s.tick(5)
    assert "DiskFull:n1" not in {k for k, a in s.alerts().items() if a["state"] == "firing"}
    assert s.alerts()["DiskFull:n2"]["state"] == "firing"
    assert told(s, "DiskFull") == ["firing", "firing", "resolved"]


def test_an_alert_that_fires_again_before_its_resolution_was_told_goes_on_as_one(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url, group_interval="10m"))
    fire_and_tell(s, webhook)
    s.values("n1", {DISK_ROOT: 0.5})
    s.tick(5)  # resolved; group_interval (10 min) keeps it untold
    s.values("n1", {DISK_ROOT: 0.99})
    s.tick(5)  # fires again
    s.settle()
    assert len(webhook.bodies) == 1  # the receivers heard "firing" and it still fires: nothing new to say
    s.restart()
    s.values("n1", {DISK_ROOT: 0.99})
    s.tick(1)
    open_ = [a for a in s.alerts().values()]
    assert len(open_) == 1 and open_[0]["state"] == "firing" and open_[0]["notified"] == "firing"
    assert [(r["state"], r["notified"]) for r in history(s)] == [("resolved", "superseded"), ("firing", "firing")]
    s.values("n1", {DISK_ROOT: 0.5})
    s.tick(601)
    s.settle()
    body = wait_until(lambda: len(webhook.bodies) == 2 and webhook.bodies[1], what="the one resolution")
    assert body["status"] == "resolved" and len(body["alerts"]) == 1


def test_notifications_queued_at_a_reload_are_delivered_by_the_new_channels(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url))
    webhook.status = 503  # the receiver is failing: the notification waits in its channel
    fire_until_refused(s, webhook)
    assert s.engine.notifier.queued() == 1
    s.loop.run_until_complete(s.engine.reload())  # the same file: the channel is rebuilt
    assert s.engine.notifier.queued() == 1
    webhook.status = 200
    settle_until(s, lambda: webhook.bodies, 10)
    assert [b["status"] for b in webhook.bodies] == ["firing"]


def test_a_notification_not_delivered_at_a_stop_is_told_after_the_restart(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url))
    webhook.status = 503
    fire_until_refused(s, webhook)
    s.restart()  # marked told when queued; taken back at the stop, told by the next start
    webhook.status = 200
    s.values("n1", {DISK_ROOT: 0.99})
    s.tick(31)
    settle_until(s, lambda: webhook.bodies, 10)
    assert [b["status"] for b in webhook.bodies] == ["firing"]
    s.tick(1)
    assert s.alerts()["DiskFull:n1"]["notified"] == "firing"


def test_a_webhook_that_answers_4xx_is_given_up_at_once_and_the_next_goes_out(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url, group_interval="0s"))
    webhook.status = 400
    fire_until_refused(s, webhook)
    s.settle(0.3)
    assert len(webhook.refused) == 1 and s.engine.notifier.queued() == 0  # not retried
    assert any("gave up (permanent): Permanent: HTTP 400" in n[2] for n in s.notes)
    webhook.status = 200
    s.values("n1", {DISK_ROOT: 0.5})
    s.tick(1)
    settle_until(s, lambda: webhook.bodies, 5)
    assert [b["status"] for b in webhook.bodies] == ["resolved"]


def test_a_failing_notice_gives_way_to_a_newer_one_of_its_group(site_factory, webhook):
    s = site_factory(FAST, hook_receiver(webhook.url, group_interval="0s"))
    webhook.status = 503
    fire_until_refused(s, webhook)
    s.values("n1", {DISK_ROOT: 0.5})
    s.tick(1)  # resolved: a newer notice of the same group queues behind the failing one
    webhook.status = 200
    settle_until(s, lambda: webhook.bodies, 10)
    s.settle(0.3)
    assert [b["status"] for b in webhook.bodies] == ["resolved"]  # the stale "firing" was not sent after it


def test_the_engines_own_alert_events_feed_only_a_rule_that_names_them(site_factory):
    rules = """
[[rule]]
name = "AnyEvent"
role = "any"
event = "*"
resolve_after = "60s"
[[rule]]
name = "AlertEvents"
role = "any"
event = "alert"
resolve_after = "60s"
"""
    s = site_factory(rules)
    s.node("n1")
    s.engine.saw_events([EventRow(s.now, "n1", "alert", "DiskFull firing", {"alertname": "DiskFull"}, "n1", 1, 1)])
    s.tick()
    assert set(s.alerts()) == {"AlertEvents:n1"}
    s.engine.saw_events([EventRow(s.now, "n1", "oom_kill", "killed", {}, "n1", 1, 2)])
    s.tick(1)
    assert set(s.alerts()) == {"AlertEvents:n1", "AnyEvent:n1"}


def test_an_event_alert_read_back_after_a_restart_still_resolves(site_factory):
    rules = """
[[rule]]
name = "Oom"
role = "any"
event = "oom_kill"
resolve_after = "60s"
"""
    s = site_factory(rules)
    s.node("n1")
    s.engine.saw_events([EventRow(s.now, "n1", "oom_kill", "killed", {}, "n1", 1, 1)])
    s.tick()
    assert s.alerts()["Oom:n1"]["state"] == "firing"
    s.restart()  # the event memory is gone; the alert comes back from SQL
    s.tick(30)
    assert s.alerts()["Oom:n1"]["state"] == "firing"
    s.tick(31)
    assert "Oom:n1" not in {k for k, a in s.alerts().items() if a["state"] == "firing"}


def test_a_command_still_running_at_a_stop_is_killed(site_factory, tmp_path):
    pidfile = tmp_path / "pid"
    script = tmp_path / "slow.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    script.chmod(0o755)
    s = site_factory(FAST, f'[[receiver]]\nname = "pager"\ncommand = ["{script}"]\n')
    s.node("n7", {DISK_ROOT: 0.99})
    s.tick()
    s.tick(31)
    settle_until(s, lambda: pidfile.exists() and pidfile.read_text().strip())
    pid = int(pidfile.read_text())
    s.stop_engine()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_a_resolved_alert_that_no_route_takes_after_a_reload_is_let_go(site_factory, webhook):
    routed = hook_receiver(webhook.url, group_interval="10m")
    s = site_factory(FAST, routed)
    fire_and_tell(s, webhook)
    s.values("n1", {DISK_ROOT: 0.5})
    s.tick(1)  # resolved, untold for 10 min
    assert s.alerts()["DiskFull:n1"]["state"] == "resolved"
    s.path.write_text(FAST + routed.replace('receiver = "hook"', 'receiver = "hook"\nmatch = { team = "db" }'))
    s.loop.run_until_complete(s.engine.reload())
    s.tick(1)
    s.tick(1)
    assert s.alerts() == {}
    assert [(r["state"], r["notified"]) for r in history(s)] == [("resolved", "unroutable")]
