"""Executable plugins as real subprocesses: good ones of each format, and ones that
hang, crash or print garbage — killed, reported with their stderr tail, and never
in the way of the others."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from clumon.agent.execplugins import ExecPlugins, run_once, scan


def plugin(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def test_scan_takes_executable_files_only(tmp_path):
    plugin(tmp_path, "good", "echo x 1\n")
    plugin(tmp_path, "not-executable", "echo x 1\n", 0o644)
    plugin(tmp_path, ".hidden", "echo x 1\n")
    plugin(tmp_path, "backup~", "echo x 1\n")
    plugin(tmp_path, "world-writable", "echo x 1\n", 0o757)
    (tmp_path / "subdir").mkdir()
    assert [p.name for p in scan(tmp_path)] == ["good"]
    assert scan(tmp_path / "missing") == []


def test_prometheus_and_nagios_plugins(tmp_path):
    prom = plugin(tmp_path, "jobs", 'echo "# TYPE q gauge"\necho \'q{queue="batch"} 42\'\n')
    nag = plugin(tmp_path, "check_x", 'echo "X WARNING - slow | t=2s"\nexit 1\n')
    out = asyncio.run(run_once(prom, 5.0))
    assert out.reason == "" and {s.name: s.value for s in out.samples} == {'q{queue="batch"}': 42.0}
    out = asyncio.run(run_once(nag, 5.0))
    assert {s.name: s.value for s in out.samples} == {
        'nagios_status{plugin="check_x"}': 1.0, 'nagios_perfdata_seconds{plugin="check_x",label="t"}': 2.0}


def test_a_hanging_plugin_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    hang = plugin(tmp_path, "hang", f'echo "about to hang" >&2\nsleep 300 &\necho $! > {pidfile}\nwait\n')
    out = asyncio.run(run_once(hang, 0.5))
    assert out.reason == "timeout" and out.samples is None
    assert "about to hang" in out.stderr_tail
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the plugin's own children are killed too"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("body, reason, detail, stderr", [
    ('echo "Traceback: boom" >&2\nexit 3\n', "crash", "exited with code 3", "Traceback: boom"),
    ("kill -9 $$\n", "crash", "killed by signal 9", ""),
    ('printf "\\377\\376 garbage\\n"\necho "oops" >&2\n', "garbage", "line 1", "oops"),
    ('echo "OK - fine | a=1parsecs"\n', "garbage", "perfdata", ""),
    ("head -c 2000000 /dev/zero | tr '\\0' 'a'\n", "garbage", "more than", ""),
])
def test_crashing_and_garbage_printing_plugins(tmp_path, body, reason, detail, stderr):
    out = asyncio.run(run_once(plugin(tmp_path, "bad", body), 10.0))
    assert out.samples is None and out.reason == reason and detail in out.detail
    assert stderr in out.stderr_tail


def test_a_plugin_that_cannot_start_is_a_crash(tmp_path):
    path = tmp_path / "noexec"
    path.write_bytes(b"\x7fELF not really")
    path.chmod(0o755)
    out = asyncio.run(run_once(path, 5.0))
    assert out.reason == "crash" and "cannot start" in out.detail


def test_plugins_run_apart_never_overlap_and_failures_are_reported_once(tmp_path):
    lock = tmp_path / "lock"
    plugin(tmp_path, "good", 'echo "good_runs 1"\n')
    # slower than its interval: a second run must wait for the first
    plugin(tmp_path, "slow", f'mkdir {lock} || echo OVERLAP >&2\nsleep 0.3\nrmdir {lock}\necho "slow_runs 1"\n')
    plugin(tmp_path, "hang", "sleep 300\n")
    plugin(tmp_path, "crash", 'echo "it broke" >&2\nexit 1\n')
    samples: dict[str, int] = {}
    events = []

    def on_samples(source, interval, got):
        samples[source] = samples.get(source, 0) + 1

    async def main():
        # a 3 s timeout: under load, 'slow' (0.3 s of sleep plus a shell) must not be
        # killed mid-run, which would leave its lock behind and look like an overlap
        runner = ExecPlugins(tmp_path, 0.05, 3.0, {"hang": 0.05}, on_samples, events.append, "node-1")
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (samples.get("exec:good", 0) >= 5 and samples.get("exec:slow", 0) >= 3
                                                   and sum(e.type == "plugin_failed" for e in events) >= 2):
            await asyncio.sleep(0.05)
        await runner.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return runner

    runner = asyncio.run(main())
    assert samples["exec:good"] >= 5, "a hanging plugin does not hold the others up"
    assert samples["exec:slow"] >= 3
    failed = {e.attrs["plugin"]: e for e in events if e.type == "plugin_failed"}
    assert failed["crash"].attrs["reason"] == "crash" and failed["crash"].attrs["stderr_tail"] == "it broke"
    assert failed["crash"].subject == "node-1"
    assert runner.plugins[tmp_path / "crash"].runs > 1
    assert sum(e.attrs["plugin"] == "crash" for e in events) == 1, "reported once while it keeps failing"
    assert "OVERLAP" not in "".join(e.attrs["stderr_tail"] for e in events)


def test_a_plugin_that_recovers_is_reported(tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")
    plugin(tmp_path, "flaky", f'if [ -e {flag} ]; then exit 1; fi\necho "x 1"\n')
    events = []

    async def main():
        runner = ExecPlugins(tmp_path, 0.05, 5.0, {}, lambda *a: None, events.append, "n")
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.type == "plugin_recovered" for e in events):
            if any(e.type == "plugin_failed" for e in events) and flag.exists():
                flag.unlink()
            await asyncio.sleep(0.05)
        await runner.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert [e.type for e in events] == ["plugin_failed", "plugin_recovered"]


def test_stopping_kills_a_running_plugin(tmp_path):
    pidfile = tmp_path / "pid"
    plugin(tmp_path, "hang", f"echo $$ > {pidfile}\nexec sleep 300\n")

    async def main():
        runner = ExecPlugins(tmp_path, 60, 600, {}, lambda *a: None, lambda e: None, "n")
        task = asyncio.create_task(runner.run())
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.05)
        await runner.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 30))
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert stat.S_ISREG(os.stat(tmp_path / "hang").st_mode)


def test_a_plugin_whose_escaped_child_holds_its_output_does_not_wedge_the_runner(tmp_path):
    pidfile = tmp_path / "pid"
    escaped = plugin(tmp_path, "escape", f'setsid sleep 300 &\necho $! > {pidfile}\necho "x 1"\n')
    try:
        out = asyncio.run(asyncio.wait_for(run_once(escaped, 0.5), 30))
        assert out.reason == "timeout"
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass
