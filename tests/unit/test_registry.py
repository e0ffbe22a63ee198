"""The root's live view keeps a node's newest incarnation: a restarted agent
replaying its killed predecessor's spool (old incarnation, pinned HELLO) does not
turn the node back into its old run."""

from __future__ import annotations

from clumon.root.registry import Registry


def test_replayed_frames_and_hello_of_an_older_incarnation_keep_the_newest():
    reg = Registry()
    reg.hello("node-1", "agg-1", 11, 100.0, "agent", {"run": "old"})
    reg.seen("node-1", "agg-1", 11, 100.0)
    reg.hello("node-1", "agg-1", 12, 200.0, "agent", {"run": "new"})
    reg.seen("node-1", "agg-1", 12, 200.0)
    # the new run replays what the old one left unacknowledged
    reg.hello("node-1", "agg-1", 11, 150.0, "agent", {"run": "old"})
    reg.seen("node-1", "agg-1", 11, 150.0)
    node = reg.nodes["node-1"]
    assert node.incarnation == 12 and node.inventory == {"run": "new"}
    # a move (failover) is still followed, whatever incarnation the frame carries
    reg.seen("node-1", "agg-2", 11, 160.0)
    assert (node.path, node.incarnation) == ("agg-2", 12)
