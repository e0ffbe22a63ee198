"""The ``[scheduler]`` table: checked when the agent's config loads."""

from __future__ import annotations

import pytest

from clumon.agent.config import AgentConfig
from clumon.agent.scheduler.config import SchedulerConfig, parse
from clumon.proto.config import ConfigError, load


def test_defaults_and_numbers():
    cfg = parse({"kind": "slurm", "cluster": "c1"})
    assert cfg == SchedulerConfig("slurm", "c1", 30.0, 20.0)
    assert parse({"kind": "lsf", "cluster": "x", "interval": 5, "timeout": 2.5}).interval == 5.0


@pytest.mark.parametrize("table, words", [
    ({"kind": "slurm", "cluster": "c", "intervall": 3}, ["unknown key 'scheduler.intervall'"]),
    ({"kind": "sge", "cluster": "c"}, ["scheduler.kind", "slurm, pbs, lsf"]),
    ({"kind": "slurm"}, ["missing key 'scheduler.cluster'"]),
    ({"kind": "slurm", "cluster": "c", "interval": 0}, ["scheduler.interval", "from 1"]),
    ({"kind": "slurm", "cluster": "c", "timeout": -1}, ["scheduler.timeout"]),
    ({"kind": "slurm", "cluster": "c", "interval": "30s"}, ["scheduler.interval", "a number"]),
    ({"kind": "slurm", "cluster": 'a"b'}, ["scheduler.cluster"]),
])
def test_bad_tables_name_the_key(table, words):
    with pytest.raises(ValueError) as err:
        parse(table)
    for w in words:
        assert w in str(err.value)


def test_agent_config_checks_the_table_at_load(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[scheduler]\nkind = "pbs"\ncluster = "c1"\ninterval = 10\n')
    assert load(AgentConfig, path).scheduler == {"kind": "pbs", "cluster": "c1", "interval": 10}
    path.write_text('[scheduler]\nkind = "pbs"\ncluster = "c1"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="unknown key 'scheduler.bogus'"):
        load(AgentConfig, path)
    assert load(AgentConfig, None).scheduler is None
