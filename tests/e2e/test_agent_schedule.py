"""The agent's schedule: one wake-up of its loop per tick, whatever the timer's clock."""

from __future__ import annotations

import time

import zmq

from clumon.proto import codec
from clumon.proto.frames import Ack, AckEntry, Kind, Request, make


def test_the_loop_wakes_once_per_tick(tree):
    """uvloop fires timers up to ~1 ms early by time.monotonic(); a source due then
    must be read by that wake-up, not by a second one just after (1.7 a tick)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        tree.agent("node-1", [port], collectors=["cpu", "load", "memory"],
                   intervals={"cpu": 0.25, "load": 0.25, "memory": 0.25})

        def serve(until: float, ask: bool = False) -> dict | None:
            asked = False
            while time.monotonic() < until:
                if ask and not asked:
                    ident = b"node-1"
                    sock.send_multipart([ident, codec.encode(make("parent", 1, time.time(),
                                                                  Request("s1", "stats", ("node-1",), {}, 5.0)))])
                    asked = True
                if not sock.poll(100):
                    continue
                ident, data = sock.recv_multipart()
                frame = codec.decode(data)
                if frame.stored:  # acknowledge as a parent does
                    sock.send_multipart([ident, codec.encode(make("parent", 1, time.time(), Ack((AckEntry(
                        frame.sender, frame.incarnation, ((frame.seq, frame.seq),)),))))])
                elif frame.kind is Kind.REPLY and frame.body.id == "s1":
                    return frame.body.result["node-1"]
            return None

        serve(time.monotonic() + 4.0)
        stats = serve(time.monotonic() + 10.0, ask=True)
    finally:
        sock.close()
        ctx.term()
    assert stats is not None, "the agent answered stats"
    ticks = stats["sources"]["cpu"]["reads"]
    assert ticks >= 10, stats
    # one fire per tick; a few more for the start and the uplink's own ticks
    assert stats["timer_fires"] <= 1.15 * ticks + 3, (stats["timer_fires"], ticks)


def test_the_agent_runs_without_openssl(tree):
    """The agent speaks no TLS: its ssl module is a stand-in, so OpenSSL (4.4 MiB of
    its resident memory) is never mapped; the agent still runs and answers."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        agent = tree.agent("node-1", [port], collectors=["cpu", "load"])
        assert sock.poll(10_000), "the agent sent its first frames"
        maps = open(f"/proc/{agent.proc.pid}/maps").read()
    finally:
        sock.close()
        ctx.term()
    mapped = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    assert not [m for m in mapped if m.startswith(("libssl", "libcrypto", "_ssl"))], sorted(mapped)
    assert any(m.startswith("loop.cpython") for m in mapped), "uvloop runs the agent"
