"""ACKs at the pace an agent asks for (``ack_every``): its parent holds them and sends
one for many frames, so the agent wakes for ACKs a fraction as often; nothing waits
at a stop, and an agent that asks for every ACK still gets each."""

from __future__ import annotations

from harness import unacked_at_exit, wait_for

from clumon.cli.client import Client

FIGURES = ("clumon_agent_frames_out_total", "clumon_agent_acks_in_total")


def test_held_acks_come_as_one_for_many_frames_and_none_wait_at_stop(tree):
    root = tree.root()
    # a parent that heartbeats its children rarely: only ack_every paces the ACKs
    agg = tree.aggregator("agg-1", [root.port], heartbeat_interval=10.0)
    fast = {"collectors": ["cpu", "load", "agent"], "interval": 0.2, "intervals": {"agent": 0.5}}
    # held longer than the 2 s an agent waits for ACKs at stop (drain_timeout)
    # and an agent that would not heartbeat on its own within it either
    held = tree.agent("node-1", [agg.port], ack_every=10.0, heartbeat_interval=5.0, **fast)
    tree.agent("node-2", [agg.port], ack_every=0.0, **fast)
    with Client(root.query) as c:
        def figures(node: str) -> dict | None:
            values = c.call("latest", node=node)["values"]
            got = {k: values[k][0] for k in FIGURES if k in values}
            return got if len(got) == 2 and got[FIGURES[0]] >= 40 else None

        one = wait_for(lambda: figures("node-1"), timeout=40, what="node-1 sent 40 frames")
        each = wait_for(lambda: figures("node-2"), timeout=40, what="node-2 sent 40 frames")
    frames, acks = one[FIGURES[0]], one[FIGURES[1]]
    # a frame every ~0.2 s and an ACK every 10 s (a few more at the start, before the HELLO)
    assert acks <= frames / 5, one
    assert each[FIGURES[1]] >= each[FIGURES[0]] / 2, each
    held.stop()
    assert unacked_at_exit(held) == 0, "the parent sent the held ACKs when the agent drained"
