"""A bad config key or value stops each daemon with exit 2 and one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    ("agent", "[intervals]\ncpu = -1\n", ["intervals.cpu", "positive"]),
    ("agent", "ack_every = -5\n", ["ack_every", "from 0 to 3600"]),
    ("aggregator", "batch_max_frames = 1.5\n", ["batch_max_frames", "expected int"]),
    ("aggregator", "listen = \"localhost:7400\"\n", ["listen", "endpoint"]),
    ("aggregator", "down_after = 0\n", ["down_after", "positive"]),
    ("root", "database = 42\n", ["database", "expected str"]),
    ("root", "metrics = \"nowhere\"\n", ["metrics", "host:port"]),
    ("root", "query = \"tcp://*:99999\"\n", ["query", "endpoint"]),
    ("root", "listen = [1, 2\n", ["not valid TOML"]),
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
