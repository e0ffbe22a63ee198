"""Readiness reaches systemd's notify socket (a real AF_UNIX datagram socket)."""

from __future__ import annotations

import socket
import subprocess
import sys

from clumon.proto import runtime


def test_ready_and_stopping_reach_the_notify_socket(tmp_path, monkeypatch, capsys):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        runtime.notify_ready("agent", {"name": "node-1"})
        assert sock.recv(64) == b"READY=1"
        runtime.notify_stopping()
        assert sock.recv(64) == b"STOPPING=1"
    line = capsys.readouterr().out.strip()
    assert line.startswith(runtime.READY_PREFIX) and '"name": "node-1"' in line


def test_no_notify_socket_is_fine(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert runtime.sd_notify(b"READY=1") is False


def test_quiet_log_warns_once_per_key_per_period(caplog):
    now = [0.0]
    quiet = runtime.QuietLog(runtime.log, every=60, clock=lambda: now[0])
    for _ in range(5):
        quiet.warn("n1", "bad frame from %s", "n1")
    quiet.warn("n2", "bad frame from %s", "n2")
    now[0] = 61
    quiet.warn("n1", "bad frame from %s", "n1")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["bad frame from n1", "bad frame from n2", "bad frame from n1 (4 more suppressed)"]


def test_quiet_gc_freezes_what_start_up_made_and_collects_on_growth_only():
    """In a fresh interpreter (the thresholds are process-wide): after quiet_gc the
    objects alive at start are frozen and the thresholds are GC_THRESHOLDS."""
    code = ("import gc; from clumon.proto import runtime; frozen = gc.get_freeze_count(); runtime.quiet_gc(); "
            "print(frozen, gc.get_freeze_count() > 1000, tuple(gc.get_threshold()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split(" ", 2) == ["0", "True", f"{runtime.GC_THRESHOLDS}\n"]
