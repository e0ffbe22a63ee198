"""A bad config key or value stops each daemon with exit 2 and one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import free_port

from clumon.agent.config import AgentConfig
from clumon.aggregator.config import AggregatorConfig
from clumon.proto.config import load
from clumon.root.config import RootConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

DAEMONS = {"agent": "clumon.agent", "aggregator": "clumon.aggregator", "root": "clumon.root"}

CASES = [
    # (daemon, toml text, words the one line must contain)
    ("agent", "intervall = 1\n", ["intervall", "unknown key"]),
    ("agent", "interval = \"fast\"\n", ["interval", "expected float"]),
    ("agent", "parents = [\"tcp://nohost\"]\n", ["parents[0]", "endpoint"]),
    ("agent", "[intervals]\ncpu = -1\n", ["intervals.cpu", "(0, 86400]"]),
    ("agent", "[intervals]\ncpux = 5\n", ["intervals.cpux", "unknown source"]),
    ("agent", "[intervals]\ncpu = nan\n", ["intervals.cpu", "finite", "nan"]),
    ("agent", "ack_every = -5\n", ["ack_every", "[0, 3600]"]),
    ("agent", "heartbeat_interval = nan\n", ["heartbeat_interval", "finite", "nan"]),
    ("agent", "jitter = 1e308\n", ["jitter", "[0, 3600]"]),
    ("agent", "spool_max_bytes = 0\n", ["spool_max_bytes", "integer from"]),
    ("agent", "collectors = [\"cpu\", \"cpux\"]\n", ["collectors[1]", "one of cpu"]),
    ("agent", "name = \"" + "n" * 300 + "\"\n", ["'name'", "at most 200 characters"]),
    ("agent", "[masks]\nmax_silence = inf\n", ["masks.max_silence", "finite"]),
    ("agent", "[[log]]\npath = \"/var/log/messages\"\nformt = \"plain\"\n", ["log[0].formt", "unknown key"]),
    ("agent", "[[log]]\npath = \"/var/log/m\"\nformat = \"xml\"\n", ["log[0].format", "one of plain"]),
    ("agent", "[[log]]\npath = \"/var/log/m\"\ninclude = \"([\"\n", ["log[0].include", "not a regex"]),
    ("agent", "[[log]]\npath = \"relative.log\"\n", ["log[0].path", "absolute path"]),
    ("agent", "[[log]]\nsource = \"x\"\n", ["log[0].path", "expected a path"]),
    ("agent", "[[log]]\npath = \"/var/log/m\"\nformat = \"regex\"\n", ["log[0].regex", "named groups"]),
    ("agent", "[[log]]\npath = \"/var/log/m\"\nmax_line_bytes = 1\n", ["log[0].max_line_bytes", "integer from 64"]),
    ("agent", "[[log]]\npath = \"/var/log/m\"\nrate_limit = -1\n", ["log[0].rate_limit", "[0, 1e+07]"]),
    ("agent", "[[log_rule]]\nname = \"x\"\npattern = \"a\"\nsource = \"nope\"\n", ["log_rule[0].source", "no [[log]] source"]),
    ("aggregator", "batch_max_frames = 1.5\n", ["batch_max_frames", "expected int"]),
    ("aggregator", "listen = \"localhost:7400\"\n", ["listen", "endpoint"]),
    ("aggregator", "down_after = 0\n", ["down_after", "[0.1, 86400]"]),
    ("aggregator", "max_frame_bytes = -1\n", ["max_frame_bytes", "integer from"]),
    ("aggregator", "failover_after = nan\n", ["failover_after", "finite"]),
    ("aggregator", "name = \"a/b\"\n", ["'name'", "letters, digits"]),
    ("root", "database = 42\n", ["database", "expected str"]),
    ("root", "metrics = \"nowhere\"\n", ["metrics", "host:port"]),
    ("root", "metrics = \"0.0.0.0:7402\"\n", ["metrics", "not loopback", "http_tokens"]),
    ("root", "metrics = \"10.1.2.3:7402\"\n", ["metrics", "not loopback", "http_tokens"]),
    ("root", "http_tokens = \"/nonexistent/tokens\"\n", ["http_tokens", "cannot read"]),
    ("root", "query = \"tcp://*:99999\"\n", ["query", "endpoint"]),
    ("root", "listen = [1, 2\n", ["not valid TOML"]),
    ("root", "commit_max_frames = 0\n", ["commit_max_frames", "integer from 1"]),
    ("root", "down_after = nan\n", ["down_after", "finite"]),
    ("root", "database = \"mysql://u@h/db\"\n", ["database", "sqlite or postgresql", "mysql"]),
    ("root", "[retention]\nraw = 1\nforever = 5\n", ["retention.forever", "unknown key"]),
    ("root", "log_level = \"LOUD\"\n", ["log_level", "one of DEBUG"]),
    ("root", "name = \"" + "r" * 300 + "\"\n", ["'name'", "at most 200 characters"]),
]


@pytest.mark.parametrize("daemon,text,words", CASES)
def test_bad_config_exits_2_with_one_line(tmp_path, daemon, text, words):
    cfg = tmp_path / f"{daemon}.toml"
    cfg.write_text(text)
    out = subprocess.run([sys.executable, "-m", DAEMONS[daemon], "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(cfg) in lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_missing_config_file_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clumon.root", "--config", str(tmp_path / "nope.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "nope.toml" in out.stderr and "cannot read" in out.stderr


@pytest.mark.parametrize("cls,name", [(AgentConfig, "agent.toml"), (AggregatorConfig, "aggregator.toml"),
                                      (RootConfig, "root.toml")])
def test_annotated_deploy_configs_load(cls, name):
    cfg = load(cls, DEPLOY / name)
    assert isinstance(cfg, cls)


# --- state directories and ports: a second daemon stops at once, harming nothing ---


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=60)


def _one_line(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def _stored(query: str) -> int:
    from clumon.cli.client import Client

    with Client(query) as c:
        return c.call("health")["own_frames_stored"]


def test_second_root_on_the_same_ports_and_state_stops_at_once_and_harms_nothing(tree, tmp_path):
    from harness import wait_for

    root = tree.root()
    state = tmp_path / "root"
    wait_for(lambda: (state / "running").exists(), what="the root's running marker")
    marker = (state / "running").read_text()
    db = tmp_path / "clumon.db"
    db_stat = db.stat()
    stored_before = _stored(root.query)

    # the same command line again: same ports, same state dir, same database
    line = _one_line(subprocess.run(root.argv, capture_output=True, text=True, timeout=60))
    assert f"port {root.port} in use" in line

    # other ports, same state dir: the lock says who holds it
    other = tmp_path / "other.toml"
    other.write_text((tmp_path / "root.toml").read_text()
                     .replace(f":{root.port}\"", f":{free_port()}\"")
                     .replace(root.query + "\"", f"tcp://127.0.0.1:{free_port()}\""))
    line = _one_line(_run("clumon.root", "--config", str(other)))
    assert line == f"clumon-root: state dir {state} is in use by pid {root.proc.pid}"

    # the first root's marker and database are untouched and it keeps storing
    assert (state / "running").read_text() == marker
    assert db.stat().st_ino == db_stat.st_ino
    wait_for(lambda: _stored(root.query) > stored_before,
             what="the first root storing after the second one's attempts")
    assert root.stop() == 0
    assert not (state / "running").exists()


def test_second_aggregator_on_the_same_state_dir_stops_at_once(tree, tmp_path):
    root = tree.root()
    agg = tree.aggregator("agg-1", [root.port])
    line = _one_line(subprocess.run(agg.argv, capture_output=True, text=True, timeout=60))
    assert f"port {agg.port} in use" in line
    line = _one_line(_run("clumon.aggregator", "--config", str(tmp_path / "agg-1.toml"),
                          "--listen", f"tcp://127.0.0.1:{free_port()}"))
    assert line.startswith(f"clumon-aggregator: state dir {tmp_path / 'agg-1'} is in use by pid ")


def test_second_agent_on_the_same_state_dir_stops_at_once(tree, tmp_path):
    root = tree.root()
    agent = tree.agent("node-1", [root.port])
    line = _one_line(subprocess.run(agent.argv, capture_output=True, text=True, timeout=60))
    assert line.startswith(f"clumon-agent: state dir {tmp_path / 'node-1'} is in use by pid ")
    # once the first is gone, the directory is free again
    assert agent.stop() == 0
    again = tree.agent("node-1", [root.port])
    assert again.proc.poll() is None


def _keys(tmp_path: Path) -> dict[str, str]:
    from clumon.proto.curve import generate
    d = tmp_path / "k"
    generate("me", d)
    generate("parent", d)
    (tmp_path / "auth").mkdir()
    (tmp_path / "notkey").write_text("hello\n")
    return {"sec": str(d / "me.key_secret"), "pub": str(d / "me.key"), "parent": str(d / "parent.key"),
            "auth": str(tmp_path / "auth"), "notkey": str(tmp_path / "notkey")}


CURVE_CASES = [
    ("agent", '[curve]\nsecret_key = "{tmp}/nowhere.key_secret"\nparent_key = "{parent}"\n',
     ["[curve]", "cannot read key file", "nowhere.key_secret"]),
    ("agent", '[curve]\nsecret_key = "{pub}"\nparent_key = "{parent}"\n', ["[curve]", "no secret key", "key_secret"]),
    ("agent", '[curve]\nsecret_key = "{sec}"\n', ["[curve]", "parent_key", "required"]),
    ("agent", '[curve]\nsecret_key = "{sec}"\nparent_key = "{notkey}"\n', ["[curve]", "not a key file"]),
    ("agent", '[curve]\nparent_key = "{parent}"\n', ["[curve]", "secret_key is required"]),
    ("agent", '[curve]\nsecret_key = "{sec}"\nparent_key = ["{parent}", "{parent}"]\n',
     ["[curve]", "one per parent (1)", "got 2"]),
    ("agent", '[curve]\nsecret = "{sec}"\n', ["curve.secret", "unknown key"]),
    ("aggregator", '[curve]\nsecret_key = "{sec}"\nparent_key = "{parent}"\n', ["authorized_keys", "required"]),
    ("aggregator", '[curve]\nsecret_key = "{sec}"\nparent_key = "{parent}"\nauthorized_keys = "{notkey}"\n',
     ["authorized_keys", "not a directory"]),
    ("root", 'roles = "{tmp}/roles.toml"\n', ["roles", "[curve]"]),
    ("root", '[curve]\nsecret_key = "{sec}"\nauthorized_keys = "{auth}"\n', []),  # fine: checked to start
]


@pytest.mark.parametrize("daemon,text,words", CURVE_CASES)
def test_bad_curve_keys_exit_2_with_one_line(tmp_path, daemon, text, words):
    k = _keys(tmp_path)
    cfg = tmp_path / f"{daemon}.toml"
    cfg.write_text(text.format(tmp=tmp_path, **k))
    if not words:  # a good [curve]: the config loads (the daemon is not started here)
        load({"root": RootConfig, "agent": AgentConfig, "aggregator": AggregatorConfig}[daemon], cfg)
        return
    line = _refused(daemon, cfg)
    for w in words:
        assert w in line, (w, line)


@pytest.mark.parametrize("text,words", [
    ('[[client]]\nkey = "ann"\nrole = "god"\n', ["role", "admin, operator or user", "god"]),
    ('[[client]]\nkey = "op"\nrole = "operator"\n', ["operator needs 'nodes'"]),
    ('[[client]]\nkey = "u"\nrole = "user"\nnodes = ["x/*"]\n', ["'nodes' is for operators only"]),
    ('[[client]]\nkey = "u"\nrole = "user"\n[[client]]\nkey = "u"\nrole = "admin"\n', ["listed twice"]),
    ('[[clients]]\nkey = "u"\n', ["unknown table", "clients"]),
    ('[[client]]\nkey = "u"\nrole = "user"\nextra = 1\n', ["unknown key", "extra"]),
    ("[[client]\n", ["not valid TOML"]),
])
def test_a_bad_roles_file_stops_the_root_with_one_line(tmp_path, text, words):
    k = _keys(tmp_path)
    roles = tmp_path / "roles.toml"
    roles.write_text(text)
    cfg = tmp_path / "root.toml"
    cfg.write_text(f'roles = "{roles}"\n[curve]\nsecret_key = "{k["sec"]}"\nauthorized_keys = "{k["auth"]}"\n')
    line = _refused("root", cfg)
    assert "roles file" in line
    for w in words:
        assert w in line, (w, line)


@pytest.mark.parametrize("text,words", [
    ("prom\n", ["expected 'NAME TOKEN'"]),
    ("prom short\n", ["shorter than 24"]),
    ("a " + "t" * 30 + "\nb " + "t" * 30 + "\n", ["also 'a'"]),
])
def test_a_bad_http_tokens_file_stops_the_root_with_one_line(tmp_path, text, words):
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    cfg = tmp_path / "root.toml"
    cfg.write_text(f'http_tokens = "{tokens}"\n')
    line = _refused("root", cfg)
    assert str(tokens) in line
    for w in words:
        assert w in line, (w, line)


def _refused(daemon: str, cfg: Path) -> str:
    """Start ``daemon`` with ``cfg``: it must stop with exit 2 and one line, returned."""
    out = subprocess.run([sys.executable, "-m", DAEMONS[daemon], "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    return lines[0]
