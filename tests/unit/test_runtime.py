"""Readiness reaches systemd's notify socket (a real AF_UNIX datagram socket)."""

from __future__ import annotations

import socket

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
