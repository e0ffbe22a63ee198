"""An Uplink and Downlinks over real ZeroMQ sockets on 127.0.0.1, in one process.

Waits are conditions polled with a generous timeout, never bare sleeps: a test
that passes does so as fast as the link allows. Timings are short (heartbeat
0.2 s, failover 1 s) and passed in, as a daemon's config would.

Names are unique per run: an ephemeral port may have belonged to a daemon another
test (or a developer's demo) just stopped, whose agents keep reconnecting to it;
a stray "node-1" would take over our child's routing id (ROUTER_HANDOVER).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Callable

import pytest
import zmq

from clumon.proto import codec, transport
from clumon.proto.downlink import Downlink
from clumon.proto.frames import Ack, AckEntry, Control, Data, Event, Frame, Heartbeat, Hello, Kind, make
from clumon.proto.spool import Spool
from clumon.proto.uplink import LinkTimings, Uplink

HB = 0.2
TIMINGS = LinkTimings(heartbeat_interval=HB, failover_after=1.0, resend_after=60.0, jitter=0.0)
WAIT = 10.0  # generous: a condition that holds is met in well under a second

pytestmark = pytest.mark.timeout(60)

NAME = f"links-{os.getpid()}-{os.urandom(3).hex()}"
OTHER = NAME + "-other"
JUNK = NAME + "-junk"


def run(scenario: Callable) -> None:
    """Run an async scenario with its own zmq context, closed even on failure."""

    async def main() -> None:
        ctx = transport.make_context()
        try:
            await asyncio.wait_for(scenario(ctx), 45)
        finally:
            ctx.destroy(linger=0)

    asyncio.run(main())


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT, every: Callable[[], object] | None = None):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if every is not None:
            every()
        await asyncio.sleep(0.01)


class Parent:
    """A Downlink that records what it gets and (optionally) acks stored frames."""

    def __init__(self, ctx, bind: str = "tcp://127.0.0.1:0", name: str = "rack-1", ack: bool = True,
                 max_frame_bytes: int = codec.MAX_FRAME_BYTES, on_transitions: Callable | None = None):
        self.incarnation = time.time_ns()
        self.ack = ack
        self.root = 0
        self.frames: list[tuple[str, Frame, bytes]] = []
        self.transitions: list = []
        self.down = Downlink(ctx, bind, name, self.incarnation, self._on_frame, on_transitions or self.transitions.extend,
                             heartbeat_interval=HB, down_after=5.0, max_frame_bytes=max_frame_bytes,
                             root_incarnation=lambda: self.root)
        self.endpoint = f"tcp://127.0.0.1:{self.down.port}"
        self.receiving = asyncio.create_task(self.down.receive())
        self.ticking = asyncio.create_task(self._tick())

    def _on_frame(self, who: str, frame: Frame, data: bytes) -> None:
        self.frames.append((who, frame, data))
        if frame.stored and self.ack:
            self.down.send(who, Ack((AckEntry(frame.sender, frame.incarnation, ((frame.seq, frame.seq),)),)))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(HB / 2)
            self.down.tick()

    def seqs(self, sender: str = NAME) -> set[int]:
        return {f.seq for who, f, _ in self.frames if f.sender == sender and f.stored}

    def count(self, kind: Kind, sender: str = NAME) -> int:
        return sum(1 for _, f, _ in self.frames if f.kind is kind and f.sender == sender)

    async def close(self) -> None:
        for task in (self.receiving, self.ticking):
            task.cancel()
        await asyncio.gather(self.receiving, self.ticking, return_exceptions=True)
        self.down.close()


class Child:
    """An Uplink with its receive loop and (optionally) its timers running."""

    def __init__(self, ctx, parents: list[str], name: str = NAME, timers: bool = True,
                 clock: Callable[[], float] = time.monotonic, timings: LinkTimings = TIMINGS):
        self.spool = Spool(clock=clock)
        self.got: list[Frame] = []
        self.incarnation = time.time_ns()
        self.up = Uplink(ctx, name, self.incarnation, tuple(parents), timings, self.spool, self.got.append,
                         clock=clock)
        self.tasks = [asyncio.create_task(self.up.receive())]
        if timers:
            self.tasks.append(asyncio.create_task(self._ticks()))

    async def _ticks(self) -> None:
        """What a daemon's timer does: tick the uplink every tick_period."""
        while True:
            await asyncio.sleep(self.up.tick_period)
            self.up.tick()

    def alive(self) -> bool:
        return not any(t.done() for t in self.tasks)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.up.close()


HELLO = Hello(1, ("node_load1", "node_uptime_seconds"), {"host": NAME, "cores": 2}, "agent")


def data(i: float) -> Data:
    return Data.from_values(1, [i, 1000.0 + i])


async def connected(child: Child, parent: Parent) -> None:
    """The link is up both ways: the parent greeted the child."""
    await until(lambda: child.up.parent_incarnation == parent.incarnation, "the parent's greeting",
                every=None if len(child.tasks) > 1 else child.up.tick)


# --- delivery and acks ------------------------------------------------------------


def test_stored_frames_arrive_and_acks_empty_the_spool():
    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        child = Child(ctx, [parent.endpoint])
        assert child.up.send_stored(HELLO) == 1
        for i in range(3):
            child.up.send_stored(data(i))
        child.up.send_stored(Event("plugin_failed", NAME, "gpu collector failed", {"errors": 3}))
        # sent before the link was up, these go out when the parent greets the child
        await until(lambda: parent.seqs() == {1, 2, 3, 4, 5}, "five stored frames at the parent")
        assert len(child.spool) == 5, "nothing is forgotten before the ack"

        by_seq = {f.seq: (f, raw) for _, f, raw in parent.frames if f.stored}
        assert by_seq[1][0].body == HELLO
        assert [by_seq[s][0].body for s in (2, 3, 4)] == [data(0), data(1), data(2)]
        assert by_seq[5][0].kind is Kind.EVENT
        assert all(f.incarnation == child.incarnation and f.sender == NAME for f, _ in by_seq.values())
        assert by_seq[3][1] == next(e.data for e in child.spool.all() if e.seq == 3), "spooled bytes are sent as is"

        # an ack for another incarnation of this node (its previous life) keeps everything
        parent.down.send(NAME, Ack((AckEntry(NAME, child.incarnation - 1, ((1, 5),)),)))
        parent.down.send(NAME, Ack((AckEntry(NAME, child.incarnation, ((1, 2),)),)))
        await until(lambda: len(child.spool) == 3, "the ack of seqs 1-2")
        assert [e.seq for e in child.spool.all()] == [3, 4, 5]
        parent.down.send(NAME, Ack((AckEntry(NAME, child.incarnation, ((3, 5),)),)))
        await until(lambda: len(child.spool) == 0, "the ack of seqs 3-5")
        assert child.spool.acked_total == 5 and child.alive()
        await child.close()
        await parent.close()

    run(scenario)


def test_acks_held_for_a_child_that_asks_go_as_one_and_before_anything_else():
    """A child whose HELLO says ack_every gets one ACK for many frames, merged, and
    any other frame for it (here a CONTROL; a heartbeat alike) takes it along first."""
    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        parent.ticking.cancel()  # no heartbeats: only the hold and the CONTROL send ACKs
        child = Child(ctx, [parent.endpoint], timers=False)  # nor from the child: it is not idle
        await connected(child, parent)  # IMMEDIATE: a frame sent before the link is up goes nowhere
        hello = Hello(1, HELLO.series, {**HELLO.inventory, "ack_every": 30.0}, "agent")
        child.up.send_stored(hello)
        for i in range(5):
            child.up.send_stored(data(i))
        await until(lambda: parent.seqs() == {1, 2, 3, 4, 5, 6}, "six stored frames at the parent")
        for _, f, _ in parent.frames:  # acknowledged one by one, as commits come
            parent.down.send_ack(NAME, Ack((AckEntry(f.sender, f.incarnation, ((f.seq, f.seq),)),)))
        await asyncio.sleep(0.3)
        assert child.up.acks_in == 0 and len(child.spool) == 6, "held: ack_every is 30 s"
        parent.down.send(NAME, Control("set_masks", NAME, {"reset": True}))
        await until(lambda: any(f.kind is Kind.CONTROL for f in child.got), "the CONTROL")
        assert child.up.acks_in == 1 and len(child.spool) == 0, "one ACK for all six, ahead of the CONTROL"
        # a child whose last frame was a HEARTBEAT (idle, or draining at stop) is acked at once
        child.up.send_body(Heartbeat(0))
        child.up.send_stored(data(9))
        await until(lambda: 7 in parent.seqs(), "frame 7")
        await until(lambda: parent.down.liveness.children[NAME].prompt is False, "the frame counted")
        parent.down.send_ack(NAME, Ack((AckEntry(NAME, child.incarnation, ((7, 7),)),)))
        await asyncio.sleep(0.3)
        assert child.up.acks_in == 1, "a stored frame came after the heartbeat: held again"
        child.up.send_body(Heartbeat(0))
        await until(lambda: child.up.acks_in == 2 and len(child.spool) == 0, "the held ACK, sent on the heartbeat")
        await child.close()
        await parent.close()

    run(scenario)


def test_acks_for_other_nodes_and_orders_reach_the_handler():
    """An aggregator's uplink hands on acks meant for its children and every order
    except resend_hello, which it answers itself with the same HELLO bytes."""

    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        child = Child(ctx, [parent.endpoint])
        await connected(child, parent)
        child.up.send_stored(HELLO)
        await until(lambda: parent.seqs() == {1}, "the HELLO")
        first_hello = next(raw for _, f, raw in parent.frames if f.kind is Kind.HELLO)

        parent.down.send(NAME, Control("resend_hello", NAME, {}))
        await until(lambda: parent.count(Kind.HELLO) == 2, "the HELLO again")
        again = [raw for _, f, raw in parent.frames if f.kind is Kind.HELLO][1]
        assert again == first_hello, "same seq, same bytes: the root stores it once"

        parent.down.send(NAME, Control("set_masks", NAME, {"masks": []}))
        parent.down.send(NAME, Ack((AckEntry(NAME, child.incarnation, ((1, 1),)),
                                        AckEntry(OTHER, 77, ((4, 6),)))))
        await until(lambda: len(child.got) == 2, "the order and the ack for another node")
        order, ack = child.got
        assert order.kind is Kind.CONTROL and order.body.op == "set_masks"
        assert ack.kind is Kind.ACK and ack.body.entries == (AckEntry(OTHER, 77, ((4, 6),)),)
        assert len(child.spool) == 0
        assert not any(f.kind is Kind.CONTROL and f.body.op == "resend_hello" for f in child.got)
        await child.close()
        await parent.close()

    run(scenario)


def test_unacked_frames_do_not_make_the_hello_go_out_every_tick():
    """The timer replays frames unacknowledged for resend_after; a spool that is
    merely waiting for acks (the normal state at 1 Hz) must not resend the HELLO —
    it carries the whole series dictionary."""

    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        child = Child(ctx, [parent.endpoint], timers=False)
        await connected(child, parent)
        child.up.send_stored(HELLO)
        child.up.send_stored(data(1))
        for _ in range(20):
            child.up.tick()
        marker = child.up.send_stored(data(2))
        # frames on one connection arrive in order: when the marker is in, so is
        # anything the ticks sent before it
        await until(lambda: marker in parent.seqs(), "the marker frame")
        assert parent.count(Kind.HELLO) == 1
        assert parent.count(Kind.DATA) == 2
        await child.close()
        await parent.close()

    run(scenario)


def test_frames_unacked_for_resend_after_go_again_once():
    """A restart the child did not see (acks never came) is healed by resending
    stale frames — once per resend_after, not on every tick after that."""

    async def scenario(ctx):
        now = [1000.0]
        parent = Parent(ctx, ack=False)
        # the child's clock jumps past resend_after: not a silent parent to reconnect to
        slow = LinkTimings(heartbeat_interval=HB, failover_after=600.0, resend_after=60.0, jitter=0.0)
        child = Child(ctx, [parent.endpoint], timers=False, clock=lambda: now[0], timings=slow)
        await connected(child, parent)
        child.up.send_stored(HELLO)
        child.up.send_stored(data(1))
        now[0] += slow.resend_after + 1
        for _ in range(10):
            child.up.tick()
            now[0] += 0.1
        marker = child.up.send_stored(data(2))
        await until(lambda: marker in parent.seqs(), "the marker frame")
        assert parent.count(Kind.HELLO) == 2
        assert sorted(f.seq for _, f, _ in parent.frames if f.kind is Kind.DATA) == [2, 2, 3]
        await child.close()
        await parent.close()

    run(scenario)


def test_root_restart_reported_by_heartbeats_makes_the_child_replay():
    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        parent.root = 111
        child = Child(ctx, [parent.endpoint])
        await connected(child, parent)
        await until(lambda: child.up.root_incarnation == 111, "the root's incarnation")
        for i in range(3):
            child.up.send_stored(data(i))
        await until(lambda: parent.count(Kind.DATA) == 3, "three DATA frames")
        parent.root = 222  # the root behind this parent restarted
        await until(lambda: parent.count(Kind.DATA) == 6, "the replay after the root restarted")
        assert child.up.root_incarnation == 222
        assert sorted(f.seq for _, f, _ in parent.frames if f.kind is Kind.DATA) == [1, 1, 2, 2, 3, 3]
        await child.close()
        await parent.close()

    run(scenario)


# --- restarts and failover -------------------------------------------------------------


async def rebind(ctx, endpoint: str, **kw) -> Parent:
    """A new parent on the same port (the old socket's listener may linger briefly)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return Parent(ctx, endpoint, **kw)
        except zmq.ZMQError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def test_parent_restart_makes_the_child_replay():
    async def scenario(ctx):
        first = Parent(ctx, ack=False)
        child = Child(ctx, [first.endpoint])
        child.up.send_stored(HELLO)
        for i in range(3):
            child.up.send_stored(data(i))
        await until(lambda: first.seqs() == {1, 2, 3, 4}, "four frames at the first parent")
        await first.close()

        child.up.send_stored(data(99))  # while no parent listens
        second = await rebind(ctx, first.endpoint, ack=True)
        assert second.incarnation != first.incarnation
        await until(lambda: len(child.spool) == 0, "the replay to the new parent, acknowledged")
        assert second.seqs() == {1, 2, 3, 4, 5}
        assert child.up.parent_incarnation == second.incarnation
        assert child.up.failovers == 0 and child.alive()
        await child.close()
        await second.close()

    run(scenario)


def test_failover_to_the_next_parent_and_back_to_work():
    async def scenario(ctx):
        first = Parent(ctx, ack=False)
        second = Parent(ctx, name="rack-2", ack=True)
        child = Child(ctx, [first.endpoint, second.endpoint])
        child.up.send_stored(HELLO)
        child.up.send_stored(data(1))
        await until(lambda: first.seqs() == {1, 2}, "two frames at the first parent")

        # slow acks are no reason to fail over: the first parent heartbeats but acks nothing
        hold = time.monotonic() + 2 * TIMINGS.failover_after
        await until(lambda: time.monotonic() > hold, "two failover periods")
        assert child.up.failovers == 0 and len(child.spool) == 2

        await first.close()  # now it is silent
        child.up.send_stored(data(2))
        await until(lambda: child.up.failovers == 1, "the failover")
        assert child.up.parent == second.endpoint
        await until(lambda: len(child.spool) == 0, "the replay to the second parent, acknowledged")
        assert second.seqs() == {1, 2, 3}
        assert child.alive(), "the receive loop survives the socket swap"

        # and the link keeps working on the new parent
        seq = child.up.send_stored(data(3))
        await until(lambda: seq in second.seqs() and len(child.spool) == 0, "a frame after the failover")
        assert child.up.failovers == 1
        await child.close()
        await second.close()

    run(scenario)


# --- bad input ------------------------------------------------------------------------


def test_garbage_to_the_router_is_counted_and_good_frames_keep_flowing():
    async def scenario(ctx):
        parent = Parent(ctx, ack=True, max_frame_bytes=4096)
        child = Child(ctx, [parent.endpoint])
        child.up.send_stored(HELLO)
        await until(lambda: len(child.spool) == 0, "the HELLO, acknowledged")

        junk = transport.dealer(ctx, JUNK, parent.endpoint)
        rng = random.Random(1)
        good = codec.encode(make(JUNK, 1, 1.0, data(0), 1))
        bad: list[list[bytes]] = [
            [b""],
            [b"\xc1"],
            [good[:-4]],                                          # truncated
            [good + b"\x00"],                                     # trailing byte
            [b"\x97\x02" + good[2:]],                             # version 2
            [codec.encode(make(NAME, 1, 1.0, data(0), 1))],   # someone else's name
            [good, b"second part"],                               # two parts
            *[[rng.randbytes(rng.randrange(1, 300))] for _ in range(40)],
        ]
        total = 0
        for parts in bad:
            while not junk.send(parts):
                await asyncio.sleep(0.01)  # not connected yet
            total += 1
            child.up.send_stored(data(total))  # good frames interleaved with the junk
        await until(lambda: sum(parent.down.decode_errors.values()) >= total, "every bad message counted")
        # (a message over max_frame_bytes never arrives: ZeroMQ drops that connection,
        # MAXMSGSIZE; tests/component/test_transport.py)

        assert dict(parent.down.decode_errors) == {JUNK: total}
        assert JUNK not in parent.down.liveness.children
        assert all(who == NAME for who, _, _ in parent.frames)
        await until(lambda: len(child.spool) == 0, "every good frame acknowledged")
        assert parent.seqs() == set(range(1, total + 2))
        assert not parent.receiving.done(), "the receive loop survives"
        junk.close()
        await child.close()
        await parent.close()

    run(scenario)


def test_garbage_from_the_parent_is_counted_by_the_child():
    async def scenario(ctx):
        parent = Parent(ctx, ack=True)
        child = Child(ctx, [parent.endpoint])
        await connected(child, parent)
        for raw in (b"\xc1", b"", codec.encode(make("rack-1", 1, 1.0, Heartbeat(0)))[:-1]):
            parent.down.send_raw(NAME, raw)
        await until(lambda: child.up.decode_errors == 3, "three bad frames counted")
        child.up.send_stored(HELLO)
        await until(lambda: len(child.spool) == 0, "the link still works")
        assert child.alive()
        await child.close()
        await parent.close()

    run(scenario)


def test_handler_errors_do_not_stop_the_receive_loop():
    async def scenario(ctx):
        calls = []

        def broken(transitions):
            calls.append(transitions)
            raise RuntimeError("handler bug")

        parent = Parent(ctx, ack=True, on_transitions=broken)
        child = Child(ctx, [parent.endpoint])
        child.up.send_stored(HELLO)
        await until(lambda: calls, "the transition handler called")
        child.up.send_stored(data(1))
        await until(lambda: len(child.spool) == 0 and parent.seqs() == {1, 2}, "frames after the handler failed")
        assert not parent.receiving.done()
        await child.close()
        await parent.close()

    run(scenario)


def test_back_to_the_preferred_parent_when_it_returns():
    async def scenario(ctx):
        first = Parent(ctx, ack=True)
        port = first.down.port
        second = Parent(ctx, name="rack-2", ack=True)
        child = Child(ctx, [first.endpoint, second.endpoint])
        child.up.send_stored(HELLO)
        await until(lambda: len(child.spool) == 0, "the HELLO, acknowledged by the first parent")
        await first.close()
        await until(lambda: child.up.parent == second.endpoint, "the failover to the second parent")
        n_at_second = len(second.frames)
        # the first parent comes back on the same port: the child returns to it
        back = Parent(ctx, bind=f"tcp://127.0.0.1:{port}", ack=True)
        await until(lambda: child.up.parent == back.endpoint, "the return to the preferred parent")
        seq = child.up.send_stored(data(7))
        await until(lambda: seq in back.seqs() and len(child.spool) == 0, "a frame stored through the first parent")
        assert len(second.frames) >= n_at_second
        assert not any(f.sender.endswith("probe") for _, f, _ in back.frames), "the probe is invisible"
        assert set(back.down.liveness.children) == {NAME}, "no phantom child from the probe"
        await child.close()
        await back.close()
        await second.close()

    run(scenario)


def test_spool_overflow_is_reported_with_exact_counts():
    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        child = Child(ctx, [parent.endpoint], timers=False)
        await connected(child, parent)
        child.spool.max_bytes = 2000  # a few frames
        child.up.send_stored(HELLO)
        for i in range(40):
            child.up.send_stored(data(i))
        assert child.spool.dropped_unreported > 0
        child.up.tick()
        await until(lambda: parent.count(Kind.EVENT) >= 1, "the loss EVENT")
        (event,) = [f for _, f, _ in parent.frames if f.kind is Kind.EVENT]
        assert event.body.type == "spool_overflow"
        # the EVENT counts every frame dropped before it; storing it may drop one more,
        # which the next report counts (dropped_total is cumulative)
        assert event.body.attrs["dropped_total"] == child.spool.dropped_total - child.spool.dropped_unreported
        held = {e.seq for e in child.spool.all()}
        assert child.up.last_seq - len(held) == child.spool.dropped_total
        await child.close()
        await parent.close()

    run(scenario)


def test_stale_frames_go_again_only_when_they_look_lost():
    """A gap (a later frame acked) or stalled acks resend; a mere backlog does not."""
    fast = LinkTimings(heartbeat_interval=HB, failover_after=30.0, resend_after=0.5, jitter=0.0)

    async def scenario(ctx):
        parent = Parent(ctx, ack=False)
        child = Child(ctx, [parent.endpoint])
        child.up.timings = fast
        await connected(child, parent)
        hello_seq = child.up.send_stored(HELLO)
        seqs = [child.up.send_stored(data(i)) for i in range(4)]
        await until(lambda: set(seqs) <= parent.seqs(child.up.name), "four frames at the parent")

        def ack(*acked):
            parent.down.send(child.up.name, Ack((AckEntry(child.up.name, child.incarnation,
                                                     tuple((s, s) for s in acked)),)))

        def copies(seq):
            return sum(1 for _, f, _ in parent.frames if f.stored and f.seq == seq and f.sender == child.up.name)

        # a backlog: acks keep coming in order, just late — nothing is sent twice
        for s in [hello_seq, *seqs[:2]]:
            ack(s)
            await asyncio.sleep(0.4)
        assert all(copies(s) == 1 for s in seqs), [copies(s) for s in seqs]
        # a gap: the last frame is acked, the one before it never is -> it goes again
        ack(seqs[3])
        await until(lambda: copies(seqs[2]) >= 2, "the lost frame resent")
        assert copies(seqs[3]) == 1
        ack(seqs[2])
        await until(lambda: len(child.spool) == 0, "everything acked")
        # stalled acks: a new frame nobody acks goes again after resend_after
        late = child.up.send_stored(data(9))
        await until(lambda: copies(late) >= 2, "a resend when acks stall", timeout=5)
        await child.close()
        await parent.close()

    run(scenario)
