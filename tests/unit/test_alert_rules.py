"""The alerts file: what it accepts, and every refusal naming its rule and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from clumon.root.alerts.rules import RulesError, load, parse

REPO = Path(__file__).resolve().parents[2]


def refused(text: str) -> str:
    with pytest.raises(RulesError) as exc:
        parse(tomllib.loads(text))
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_the_shipped_default_rules_load():
    cfg = load(REPO / "deploy" / "alerts.toml")
    names = {r.name for r in cfg.rules}
    assert {"FilesystemAlmostFull", "LoadHigh", "NodeDown", "AggregatorUnreachable", "SpoolLosingData",
            "ServiceFatal", "MemoryExhausted"} <= names
    disk = next(r for r in cfg.rules if r.name == "FilesystemAlmostFull")
    assert (disk.above, disk.recover_below, disk.for_) == (0.95, 0.93, 300.0)
    assert cfg.inhibit and cfg.inhibit[0].equal == ("node",)


def test_a_full_file_with_receivers_and_routes():
    cfg = parse(tomllib.loads("""
evaluation_interval = 2
[smtp]
host = "127.0.0.1"
port = 2525
from = "c@x"
[[receiver]]
name = "ops"
email = ["a@x", "b@x"]
webhook = "http://127.0.0.1:9/hook"
[[receiver]]
name = "pager"
command = ["/bin/true"]
[[route]]
match = { severity = "critical" }
receiver = "pager"
group_by = ["alertname", "node"]
group_wait = "1s"
[[route]]
receiver = "ops"
[[rule]]
name = "Hot"
series = 'node_temp{sensor=*}'
above = 80
recover_below = 70
for = "30s"
labels = { team = "hpc" }
summary = "{sensor} on {node} at {value} (team {team})"
"""))
    assert cfg.evaluation_interval == 2.0 and cfg.smtp.port == 2525
    assert [r.receiver for r in cfg.routes] == ["pager", "ops"] and cfg.routes[0].group_wait == 1.0
    rule = cfg.rules[0]
    assert rule.firing(81) and not rule.firing(80)
    assert not rule.recovered(75) and rule.recovered(69.9)  # hysteresis


@pytest.mark.parametrize("text, words", [
    ('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nfro = "5m"', "rule 'A': unknown key 'fro'"),
    ('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nfor = "5 minutes"', "rule 'A': key 'for': expected a duration"),
    ('[[rule]]\nname = "A"\nseries = "x[1"\nabove = 1', "rule 'A': key 'series': unbalanced"),
    ('[[rule]]\nname = "A"\nnodes = "rack-[7"\nstate = ["down"]', "rule 'A': key 'nodes': unbalanced"),
    ('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nsummary = "{nodde} hot"', "rule 'A': key 'summary': unknown field {nodde}"),
    ('[[rule]]\nname = "A"\nseries = "x"', "rule 'A': a series rule needs one of 'above' or 'below'"),
    ('[[rule]]\nname = "A"\nseries = "x"\nstate = ["down"]\nabove = 1', "rule 'A': expected exactly one of"),
    ('[[rule]]\nname = "A"\nstate = ["sleepy"]', "rule 'A': key 'state'"),
    ('[[rule]]\nname = "A"\nstate = ["down"]\nabove = 3', "rule 'A': key 'above' goes with 'series'"),
    ('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nrecover_below = 2', "recover_below"),
    ('[[rule]]\nname = "A"\nseries = "x*"\nabove = 1\nwindow = "5m"', "a 'window' rule names one series"),
    ('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nseverity = "huge"', "rule 'A': key 'severity'"),
    ('[[rule]]\nname = "A"\nstate = ["down"]\n[[rule]]\nname = "A"\nstate = ["down"]', "used twice"),
    ('[[rule]]\nseries = "x"\nabove = 1', "rule #1: missing key 'name'"),
    ('[[receiver]]\nname = "r"\nwebhook = "ftp://x"', "receiver 'r': key 'webhook'"),
    ('[[receiver]]\nname = "r"', "receiver 'r': give at least one of"),
    ('[[receiver]]\nname = "r"\nemail = ["x@y"]\n[[route]]\nreceiver = "s"', "route #1: key 'receiver': no receiver named 's'"),
    ('[smtp]\nuser = "u"', "smtp: key 'user' needs 'password_file'"),
    ('bogus = 1', "alerts file: unknown key 'bogus'"),
])
def test_bad_files_are_refused_with_rule_and_key(text, words):
    assert words in refused(text)


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "alerts.toml"
    bad.write_text('[[rule]]\nname = "A"\nseries = "x"\nabove = "high"\n')
    with pytest.raises(RulesError, match=r"alerts\.toml: rule 'A': key 'above': expected a finite number"):
        load(bad)
    bad.write_text("[[rule]\n")
    with pytest.raises(RulesError, match="not valid TOML"):
        load(bad)
    with pytest.raises(RulesError, match="cannot read"):
        load(tmp_path / "missing.toml")


def test_clumon_rules_check_needs_no_root_and_says_what_is_wrong(tmp_path):
    import subprocess
    import sys
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text((REPO / "deploy" / "alerts.toml").read_text())
    bad.write_text('[[rule]]\nname = "A"\nseries = "x"\nabove = 1\nfor = "soon"\n')
    run = [sys.executable, "-m", "clumon.cli", "--endpoint", "tcp://127.0.0.1:9", "rules", "check"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "ok, 9 rules" in ok.stdout
    no = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60)
    assert no.returncode == 1 and len(no.stderr.strip().splitlines()) == 1
    assert "bad.toml: rule 'A': key 'for'" in no.stderr


def test_the_alert_ops_say_when_alerts_are_off():
    import asyncio

    from clumon.root.ops.alerts import AlertOps
    from clumon.root.ops.base import QueryError
    ops = {op.name: op for op in AlertOps(None).ops()}
    with pytest.raises(QueryError) as exc:
        asyncio.run(ops["alerts"].handler({}))
    assert exc.value.code == "alerts_off" and "alerts = " in exc.value.message
