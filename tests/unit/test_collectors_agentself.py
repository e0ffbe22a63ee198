"""The agent's own health series: the uplink's figures and /proc/self, parsed
from a fake /proc tree and read once from the real one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from clumon.agent.collectors.agentself import AgentSelfCollector

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

LINK = {"frames_out": 12, "bytes_out": 3456, "spool_frames": 2, "spool_bytes": 900,
        "spool_dropped_total": 1, "spool_disk_errors": 4, "failovers": 0, "decode_errors": 3}


def fake_proc(tmp_path: Path, stat: str, statm: str) -> str:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(stat)
    (tmp_path / "4242" / "statm").write_text(statm)
    return str(tmp_path)


def test_link_figures_cpu_seconds_and_rss_from_a_fake_proc(tmp_path):
    # a command name with spaces and a parenthesis must not shift the fields
    stat = f"4242 (clumon agent) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 {3 * TICK} {TICK // 2} 0 0 20 0 3 0\n"
    got = {s.name: s.value for s in AgentSelfCollector(lambda: LINK, fake_proc(tmp_path, stat, "7000 1500 300 1 0 2000 0\n"), "4242").collect()}
    assert got["clumon_agent_frames_out_total"] == 12
    assert got["clumon_agent_bytes_out_total"] == 3456
    assert got["clumon_agent_spool_frames"] == 2 and got["clumon_agent_spool_bytes"] == 900
    assert got["clumon_agent_spool_dropped_total"] == 1 and got["clumon_agent_decode_errors_total"] == 3
    assert got["clumon_agent_failovers_total"] == 0 and got["clumon_agent_spool_disk_errors_total"] == 4
    assert got["clumon_agent_cpu_seconds_total"] == pytest.approx(3 + (TICK // 2) / TICK)
    assert got["clumon_agent_resident_bytes"] == 1500 * PAGE


def test_missing_or_broken_sources_give_none_never_raise(tmp_path):
    def broken() -> dict:
        raise AttributeError("no uplink yet")

    proc = fake_proc(tmp_path, "4242 (x) S 1\n", "garbage\n")
    got = {s.name: s.value for s in AgentSelfCollector(broken, proc, "4242").collect()}
    assert len(got) == 11 and all(v is None for v in got.values())
    got = {s.name: s.value for s in AgentSelfCollector(lambda: {"frames_out": True}, str(tmp_path / "none"), "1").collect()}
    assert all(v is None for v in got.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")
def test_real_proc_self():
    got = {s.name: s.value for s in AgentSelfCollector(lambda: LINK).collect()}
    assert got["clumon_agent_cpu_seconds_total"] > 0
    assert 1 << 20 < got["clumon_agent_resident_bytes"] < 1 << 34
