"""A bad ``[scheduler]`` table stops the agent with exit 2 and one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("table, words", [
    ('kind = "slurm"\ncluster = "c1"\nbogus = 1\n', ["scheduler.bogus", "unknown key"]),
    ('kind = "sge"\ncluster = "c1"\n', ["scheduler.kind", "slurm, pbs, lsf"]),
    ('kind = "slurm"\n', ["scheduler.cluster", "missing"]),
    ('kind = "lsf"\ncluster = "c1"\ninterval = 0\n', ["scheduler.interval"]),
])
def test_bad_scheduler_table_exits_2_with_one_line(tmp_path, table, words):
    path = tmp_path / "agent.toml"
    path.write_text("[scheduler]\n" + table)
    done = subprocess.run([sys.executable, "-m", "clumon.agent", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    for w in words:
        assert w in lines[0]
