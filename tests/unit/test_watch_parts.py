"""The watch's pieces without a running agent: its tables refused with file and
key, and /proc read from a fake tree (sockets, processes, a reused pid)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clumon.agent.config import AgentConfig
from clumon.agent.watch.procs import ProcTable
from clumon.proto.config import ConfigError, from_dict


@pytest.mark.parametrize("table, words", [
    ({"service": [{"name": "a", "cmdline": "x[("}]}, "service[0]: (a) key 'cmdline': not a regex"),
    ({"service": [{"name": "a"}]}, "expected exactly one of port, cmdline, exe, pidfile, unix_socket"),
    ({"service": [{"name": "a", "port": 80, "exe": "/x"}]}, "got port, exe"),
    ({"service": [{"name": "a", "port": 80, "start": ["no-such-program-here"]}]}, "no command 'no-such-program-here'"),
    ({"service": [{"name": "a", "port": 80, "start": ["/no/such/file"]}]}, "is not an executable file"),
    ({"service": [{"name": "a", "port": 80, "user": "no-such-user-xyz"}]}, "no user named 'no-such-user-xyz'"),
    ({"service": [{"name": "a", "port": 80, "bogus": 1}]}, "unknown key 'service[0].bogus'"),
    ({"service": [{"name": "a", "port": 70000}]}, "key 'service[0].port'"),
    ({"service": [{"name": "a", "port": 80, "depends_on": ["b"]}]}, "no service named 'b'"),
    ({"service": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}, "the name 'a' is used twice"),
    ({"service": [{"name": "a", "port": 80, "depends_on": ["b"]}, {"name": "b", "port": 81, "depends_on": ["a"]}]},
     "a cycle"),
    ({"processes": {"forbidden": [{"action": "kill"}]}}, "processes.forbidden[0]: expected one of 'name'"),
    ({"processes": {"limits": [{"cmdline": "x", "cpu_ratio": 0.5, "for": "soon"}]}}, "key 'processes.limits[0].for'"),
    ({"processes": {"limits": [{"user": "root"}]}}, "expected 'cpu_ratio' or 'rss_bytes'"),
    ({"rule": [{"when": {"service": "a"}, "then": {"stop": "nope"}}]}, "key 'rule[0].then.stop': no service named"),
    ({"rule": [{"when": {"state": "fatal"}, "then": {"notify": "x"}}]}, "key 'when'"),
    ({"rule": [{"when": {"service": "a"}, "then": {"stop": "a", "start": "a"}}]}, "exactly one of command"),
])
def test_bad_watch_tables_name_their_key(table, words):
    with pytest.raises(ConfigError) as exc:
        from_dict(AgentConfig, table, "agent.toml")
    assert words in str(exc.value) and str(exc.value).startswith("agent.toml: ")


def test_good_tables_load():
    cfg = from_dict(AgentConfig, {
        "service": [{"name": "web", "port": 8080, "start": ["python3", "-m", "http.server"], "depends_on": ["db"]},
                    {"name": "db", "unix_socket": "/run/db.sock"}],
        "processes": {"forbidden": [{"name": "xmrig", "action": "kill"}],
                      "limits": [{"user": "root", "rss_bytes": 10**9, "for": 30, "action": "renice"}]},
        "rule": [{"when": {"service": "db", "state": "fatal"}, "then": {"stop": "web"}}]}, "agent.toml")
    assert cfg.service[0].finder == "port" and cfg.service[1].finder == "unix_socket"
    assert cfg.processes.limits[0].for_ == 30.0 and cfg.rule[0].action == ("stop", "web")


def fake_proc(root: Path, pid: int, comm: str, cmdline: str, start: int, ppid: int = 1) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    fields = ["S", str(ppid)] + ["0"] * 9 + ["5", "7"] + ["0"] * 6 + [str(start)] + ["0", "300"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")
    (d / "fd").mkdir()


def test_proc_table_reads_new_pids_once_and_tells_a_reused_pid(tmp_path):
    fake_proc(tmp_path, 10, "server", "python server.py 8080", start=1000)
    fake_proc(tmp_path, 11, "worker", "python server.py 8080 --worker", start=1001, ppid=10)
    t = ProcTable(str(tmp_path))
    t.scan()
    assert {p.pid for p in t.new} == {10, 11} and t.procs[11].ppid == 10
    assert t.procs[10].cmdline == "python server.py 8080" and t.procs[10].start == 1000
    t.scan()
    assert t.new == []  # nothing read again
    assert t.alive(10, 1000) and not t.alive(10, 999)
    assert t.cpu_ticks(10) == (12, 300)
    import shutil
    shutil.rmtree(tmp_path / "11")
    t.scan()
    assert 11 not in t.procs


def test_listening_sockets_from_proc_net(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (net / "tcp").write_text(head +
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        "   1: 0100007F:1F91 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n")
    (net / "tcp6").write_text(head +
        "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 4444 1\n")
    (net / "unix").write_text("Num       RefCount Protocol Flags    Type St Inode Path\n"
                              "0000: 00000002 00000000 00010000 0001 01 5555 /run/db.sock\n"
                              "0000: 00000002 00000000 00000000 0001 03 5656 /run/client.sock\n")
    t = ProcTable(str(tmp_path))
    assert t.tcp_listening() == {8080: {4242, 4444}}  # 8081 is connected, not listening
    assert t.unix_listening() == {"/run/db.sock": {5555}}
    fake_proc(tmp_path, 20, "db", "db", 5)
    os.symlink("socket:[5555]", tmp_path / "20" / "fd" / "3")
    t.scan()
    assert t.socket_owners({5555}) == {20: "3"}
