"""The scheduler source with commands that answer, hang, vanish or print garbage:
real subprocesses (shell scripts standing in for squeue and sinfo) on a real
event loop, no agent around it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from clumon.agent.scheduler.collector import SchedulerSource
from clumon.agent.scheduler.config import parse

DATA = Path(__file__).resolve().parents[1] / "data" / "scheduler"
STALE = 'sched_stale{cluster="c1"}'
ERRORS = 'clumon_sched_errors_total{cluster="c1"}'
RUNNING_JOBS = 'sched_jobs{cluster="c1",partition="",state="running"}'


def command(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def answering(bin_dir: Path, scene: str = "busy") -> None:
    command(bin_dir, "squeue", f"cat {DATA}/slurm_{scene}_squeue.json\n")
    command(bin_dir, "sinfo", f"cat {DATA}/slurm_{scene}_sinfo.json\n")


class Recorder:
    def __init__(self, bin_dir: Path, **cfg):
        self.pushes: list[dict[str, float | None]] = []
        self.all_events = []
        table = {"kind": "slurm", "cluster": "c1", "timeout": 0.5, "bin_dir": str(bin_dir), **cfg}
        self.source = SchedulerSource(parse(table), self._samples, self.all_events.append, "login1")

    def _samples(self, name, interval, samples):
        assert name == "scheduler" and interval == 30.0
        self.pushes.append({s.name: s.value for s in samples})

    @property
    def events(self) -> list:
        """The failure reports (sched_error), not the jobs sent."""
        return [e for e in self.all_events if e.type == "sched_error"]

    @property
    def job_events(self) -> list:
        return [e for e in self.all_events if e.type == "sched_jobs"]

    def poll(self) -> dict[str, float | None]:
        asyncio.run(self.source.poll())
        return self.pushes[-1]


@pytest.fixture
def bin_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    return d


def test_good_poll_pushes_figures_not_stale(bin_dir):
    answering(bin_dir)
    got = Recorder(bin_dir).poll()
    assert got[RUNNING_JOBS] == 6 and got[STALE] == 0 and got[ERRORS] == 0


@pytest.mark.parametrize("case, body, reason", [
    ("hang", "sleep 300\n", "timeout"),
    ("garbage", "echo 'this is not json'\n", "garbage"),
    ("crash", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n", "failed"),
    ("missing", None, "missing"),
])
def test_failures_keep_stale_figures_and_report_once(bin_dir, case, body, reason):
    answering(bin_dir)
    rec = Recorder(bin_dir)
    assert rec.poll()[RUNNING_JOBS] == 6
    if body is None:
        (bin_dir / "squeue").unlink()
    else:
        command(bin_dir, "squeue", body)
    for n in (1, 2, 3):
        got = rec.poll()
        assert got[STALE] == 1 and got[ERRORS] == n
        assert got[RUNNING_JOBS] == 6  # the last good figures, still there
    assert len(rec.events) == 1
    event = rec.events[0]
    assert event.type == "sched_error" and event.subject == "login1"
    assert event.attrs["reason"] == reason and event.attrs["command"].startswith("squeue")
    assert event.attrs["stale"] is True
    answering(bin_dir, "degraded")
    got = rec.poll()
    assert got[STALE] == 0 and got[RUNNING_JOBS] == 2 and got[ERRORS] == 3
    assert len(rec.events) == 1


def test_output_no_parser_foresaw_is_garbage_too(bin_dir):
    answering(bin_dir)

    class Broken:
        kind = "slurm"
        commands = {"jobs": ["squeue"]}

        def parse(self, outputs):
            raise ZeroDivisionError("surprise")

        def fallback(self, stderr):
            return False

    rec = Recorder(bin_dir)
    rec.source.adapter = Broken()
    assert rec.poll() == {STALE: 1.0, ERRORS: 1.0}
    assert rec.events[0].attrs["reason"] == "garbage" and "surprise" in rec.events[0].attrs["detail"]


def test_a_different_failure_is_reported_again(bin_dir):
    command(bin_dir, "squeue", "echo garbage\n")
    command(bin_dir, "sinfo", f"cat {DATA}/slurm_busy_sinfo.json\n")
    rec = Recorder(bin_dir)
    got = rec.poll()
    assert got == {STALE: 1.0, ERRORS: 1.0}  # no figures yet
    command(bin_dir, "squeue", "exit 3\n")
    rec.poll()
    rec.poll()
    assert [e.attrs["reason"] for e in rec.events] == ["garbage", "failed"]


def test_a_hanging_command_leaves_the_loop_free_and_is_killed(bin_dir, tmp_path):
    pidfile = tmp_path / "pid"
    command(bin_dir, "squeue", f"echo $$ > {pidfile}\nexec sleep 300\n")
    command(bin_dir, "sinfo", "echo '{}'\n")
    rec = Recorder(bin_dir)
    ticks = []

    async def main():
        async def ticker():
            while True:
                ticks.append(1)
                await asyncio.sleep(0.05)
        t = asyncio.create_task(ticker())
        await rec.source.poll()
        t.cancel()

    asyncio.run(main())
    assert len(ticks) > 1  # the loop went on while squeue hung
    pid = pidfile.read_text().strip()
    alive = subprocess.run(["ps", "-o", "stat=", "-p", pid], capture_output=True, text=True).stdout.strip()
    assert alive in ("", "Z"), alive
    assert rec.events[0].attrs["reason"] == "timeout"


def test_old_slurm_without_json_switches_to_format_strings(bin_dir):
    for name in ("squeue", "sinfo"):
        command(bin_dir, name, f"""case "$1" in
--json) echo "{name}: unrecognized option '--json'" >&2; exit 1;;
esac
cat {DATA}/slurm_busy_{name}.txt
""")
    rec = Recorder(bin_dir)
    got = rec.poll()
    assert got[RUNNING_JOBS] == 6 and got[STALE] == 0 and rec.events == []


def test_an_agent_without_a_scheduler_table_does_not_import_the_package():
    code = ("import sys; from clumon.agent.config import AgentConfig; from clumon.proto.config import load; "
            "import clumon.agent.service; load(AgentConfig, None); "
            "print(sorted(m for m in sys.modules if 'scheduler' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_jobs_go_up_all_at_first_then_only_what_changed(bin_dir):
    """The first poll sends every job listed (a sync); the same listing again sends
    nothing; another listing sends the changed jobs and ends those no longer listed."""
    from clumon.agent.scheduler import slurm

    def listed(scene):
        return {j.id: j for j in slurm.parse_squeue_json((DATA / f"slurm_{scene}_squeue.json").read_bytes())}

    answering(bin_dir, "degraded")
    rec = Recorder(bin_dir)
    rec.poll()
    first = rec.job_events
    assert len(first) == 1 and first[0].attrs["sync"] is True and first[0].attrs["last"] is True
    assert sorted(j[0] for j in first[0].attrs["jobs"]) == sorted(listed("degraded"))
    rec.poll()
    assert len(rec.job_events) == 1  # nothing changed, nothing sent
    answering(bin_dir, "busy")
    rec.poll()
    second = rec.job_events[1]
    assert "sync" not in second.attrs and second.attrs["last"] is True
    before, now = listed("degraded"), listed("busy")
    sent = {j[0]: j for j in second.attrs["jobs"]}
    gone = set(before) - set(now)
    assert gone == {"9"} and sent["9"][4:6] == ["finished", "GONE"] and sent["9"][10] is not None
    changed = {jid for jid, j in now.items() if before[jid] != j}
    assert changed and set(sent) == gone | changed
    assert sent["7"][4] == "pending" and sent["2"][4] == "running"
