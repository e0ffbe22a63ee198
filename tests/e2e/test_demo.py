"""``clumon demo``: the README's first command, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from harness import wait_for

from clumon.cli.client import Client


def _free_block(n: int = 20) -> int:
    """A base port whose next ``n`` ports are free right now.

    Drawn below the kernel's ephemeral range: a block inside it collides with the
    local ports of open connections, which a busy box (a 5,000-node bench just
    run) holds by the thousand.
    """
    import random
    import socket
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except OSError:
        low = 32768  # Linux's default
    for _ in range(200):
        base = random.randrange(10000, max(10001, low - n))
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


def test_demo_runs_a_tree_and_stops_cleanly(tmp_path):
    base = _free_block()
    demo = subprocess.Popen([sys.executable, "-m", "clumon.cli", "demo", "--dir", str(tmp_path / "demo"),
                             "--base-port", str(base)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    key = tmp_path / "demo" / "keys" / "admin.key_secret"
    env = {**os.environ, "CLUMON_KEY": str(key), "COLUMNS": "200"}  # the demo runs secured: its user's key
    try:
        def nodes():
            out = subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint",
                                  f"tcp://127.0.0.1:{base + 1}", "--json", "nodes", "--timeout", "3"],
                                 capture_output=True, text=True, timeout=30, env=env)
            got = {n["name"]: n for n in json.loads(out.stdout)} if out.returncode == 0 else {}
            return all(got.get(f"node-{i}", {}).get("state") == "up" for i in range(1, 5)) and got

        got = wait_for(nodes, timeout=60, what="the demo's four nodes up")
        assert {got[f"node-{i}"]["parent"] for i in range(1, 5)} == {"agg-1", "agg-2"}
        assert (tmp_path / "demo" / "clumon.db").exists()
        # "up" comes with a node's first frame; its first DATA is stored with the
        # root's next commit, a moment later: wait for a stored point, then show it
        with Client(f"tcp://127.0.0.1:{base + 1}", key=str(key)) as c:
            wait_for(lambda: c.call("series", node="node-1", series="node_load1", since=300)["points"],
                     timeout=30, what="a stored node_load1 point of node-1")
            # node-1 tails the demo's own daemon logs
            lines = wait_for(lambda: c.call("logs", node="node-1", source="clumon", since=600)["lines"],
                             timeout=30, what="the demo's daemon logs stored")
            assert {x["path"].rsplit("/", 1)[-1] for x in lines} & {"root.log", "agg-1.log", "node-1.log"}
        out = subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint", f"tcp://127.0.0.1:{base + 1}",
                              "series", "node-1", "node_load1", "--since", "5m"], capture_output=True, text=True,
                             env=env)  # COLUMNS: a narrow table would wrap its title
        assert out.returncode == 0 and "node_load1 on node-1" in out.stdout, out.stdout + out.stderr
        # the dashboard's API answers on the printed port (loopback: no token needed)
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 2}/api/v1/overview", timeout=10) as r:
            assert json.loads(r.read())["result"]["states"].get("up") == 4
        # without the key the root answers nothing: the demo is secured
        out = subprocess.run([sys.executable, "-m", "clumon.cli", "--endpoint", f"tcp://127.0.0.1:{base + 1}",
                              "--timeout", "2", "nodes"], capture_output=True, text=True,
                             env={k: v for k, v in env.items() if k != "CLUMON_KEY"})
        assert out.returncode == 1 and "--key" in out.stderr, out.stderr
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            rc = demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    text = demo.stdout.read()
    assert rc == 0, text
    assert "database:" in text and "clumon.db" in text and "demo stopped" in text
    assert f"dashboard: http://127.0.0.1:{base + 2}/" in text
    assert f"CLUMON_KEY={key.resolve()}" in text.replace("\n", "")
    # every daemon the demo started is gone
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout.split()
    assert not leftovers, leftovers
