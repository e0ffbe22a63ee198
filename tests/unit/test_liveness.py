"""Children's liveness on injected clocks: up, suspect, down, up, restarted."""

from __future__ import annotations

import pytest

from clumon.proto.liveness import DOWN, RESTARTED, SUSPECT, UP, Liveness


class Clocks:
    """A monotonic and a wall clock that advance together (wall is offset)."""

    def __init__(self) -> None:
        self.mono = 500.0
        self.offset = 1_700_000_000.0

    def advance(self, dt: float) -> None:
        self.mono += dt

    def wall(self) -> float:
        return self.mono + self.offset


@pytest.fixture
def clk() -> Clocks:
    return Clocks()


@pytest.fixture
def live(clk) -> Liveness:
    return Liveness(heartbeat_interval=5.0, down_after=30.0, clock=lambda: clk.mono, wall=clk.wall)


def moves(transitions):
    return [(t.subject, t.old, t.new) for t in transitions]


def test_first_frame_makes_a_child_up(live, clk):
    (t,) = live.heard("node-1", 11)
    assert (t.subject, t.old, t.new, t.incarnation) == ("node-1", None, UP, 11)
    assert t.at == clk.wall() and t.last_heard == clk.wall()
    child = live.children["node-1"]
    assert (child.state, child.since, child.frames_in) == (UP, clk.wall(), 1)


def test_frames_from_an_up_child_change_nothing(live, clk):
    live.heard("node-1", 11)
    for _ in range(5):
        clk.advance(1)
        assert live.heard("node-1", 11) == []
        assert live.tick() == []
    assert live.children["node-1"].frames_in == 6


def test_quiet_child_goes_suspect_then_down_once_each(live, clk):
    live.heard("node-1", 11)
    clk.advance(14.9)
    assert live.tick() == []
    clk.advance(0.2)  # 15.1 s: three missed heartbeat intervals
    assert moves(live.tick()) == [("node-1", UP, SUSPECT)]
    clk.advance(5)
    assert live.tick() == [], "no repeated transition"
    clk.advance(10)  # 30.1 s
    assert moves(live.tick()) == [("node-1", SUSPECT, DOWN)]
    clk.advance(100)
    assert live.tick() == []
    assert live.children["node-1"].state == DOWN


def test_transition_times_are_when_the_threshold_passed_not_when_ticked(live, clk):
    """A parent ticks about once a second (or later, when its loop was busy); the
    recorded times are the last frame plus the threshold."""
    live.heard("node-1", 11)
    heard_at = clk.wall()
    clk.advance(17.3)
    (suspect,) = live.tick()
    assert suspect.new == SUSPECT
    assert suspect.at == pytest.approx(heard_at + 15.0, abs=1e-6)
    assert suspect.last_heard == heard_at
    clk.advance(40)
    (down,) = live.tick()
    assert down.new == DOWN
    assert down.at == pytest.approx(heard_at + 30.0, abs=1e-6)
    assert live.children["node-1"].since == pytest.approx(heard_at + 30.0, abs=1e-6)


def test_long_silence_goes_straight_to_down(live, clk):
    live.heard("node-1", 11)
    clk.advance(45)
    assert moves(live.tick()) == [("node-1", UP, DOWN)]


def test_next_frame_brings_a_down_child_up(live, clk):
    live.heard("node-1", 11)
    clk.advance(31)
    live.tick()
    clk.advance(9)
    (t,) = live.heard("node-1", 11)
    assert (t.old, t.new, t.at) == (DOWN, UP, clk.wall())
    assert t.last_heard == clk.wall() - 40, "the transition says when it was last heard before"
    clk.advance(1)
    assert live.tick() == []


def test_suspect_child_comes_back_up(live, clk):
    live.heard("node-1", 11)
    clk.advance(20)
    live.tick()
    assert moves(live.heard("node-1", 11)) == [("node-1", SUSPECT, UP)]


def test_new_incarnation_is_restarted_then_up(live, clk):
    live.heard("node-1", 11)
    clk.advance(2)
    (t,) = live.heard("node-1", 12)
    assert (t.old, t.new, t.incarnation) == (UP, RESTARTED, 12)
    assert live.children["node-1"].incarnation == 12
    clk.advance(1)
    assert moves(live.tick()) == [("node-1", RESTARTED, UP)]
    assert live.heard("node-1", 12) == []


def test_restart_after_down(live, clk):
    live.heard("node-1", 11)
    clk.advance(60)
    live.tick()
    assert moves(live.heard("node-1", 12)) == [("node-1", DOWN, RESTARTED)]


def test_replayed_frames_of_the_killed_run_are_life_not_another_restart(live, clk):
    """A restarted agent replays its predecessor's spool under the old
    incarnation, interleaved with its own frames: one restart, no flip-flop."""
    live.heard("node-1", 11)
    clk.advance(60)
    live.tick()
    assert moves(live.heard("node-1", 12)) == [("node-1", DOWN, RESTARTED)]
    assert live.heard("node-1", 11) == [] and live.children["node-1"].incarnation == 12
    clk.advance(1)
    assert moves(live.tick()) == [("node-1", RESTARTED, UP)]
    # the replay alone, before any frame of the new run, still brings it up
    clk.advance(60)
    live.tick()
    assert moves(live.heard("node-1", 11)) == [("node-1", DOWN, UP)]
    assert live.children["node-1"].incarnation == 12


def test_children_are_independent(live, clk):
    live.heard("a", 1)
    clk.advance(10)
    live.heard("b", 2)
    clk.advance(6)  # a quiet for 16 s, b for 6 s
    assert moves(live.tick()) == [("a", UP, SUSPECT)]
    clk.advance(15)  # a 31 s, b 21 s
    assert sorted(moves(live.tick())) == [("a", SUSPECT, DOWN), ("b", UP, SUSPECT)]


def test_down_after_shorter_than_suspect_never_suspects(clk):
    live = Liveness(heartbeat_interval=20.0, down_after=30.0, clock=lambda: clk.mono, wall=clk.wall)
    live.heard("n", 1)
    clk.advance(29)
    assert live.tick() == []
    clk.advance(2)
    assert moves(live.tick()) == [("n", UP, DOWN)]


def test_forget(live):
    live.heard("node-1", 11)
    assert live.forget("node-1") is True
    assert live.forget("node-1") is False
    assert live.tick() == []
    (t,) = live.heard("node-1", 11)
    assert t.old is None, "a forgotten node that returns is new"


def test_a_pause_of_ours_is_not_held_against_the_children(clk):
    """After SIGSTOP/SIGCONT the children's frames are still queued, unread: the
    pause is added to their last-heard time instead of making them down."""
    live = Liveness(heartbeat_interval=1.0, down_after=3.0, clock=lambda: clk.mono, wall=clk.wall, pause_after=2.0)
    live.heard("n1", 1)
    live.tick()
    clk.mono += 10.0  # stopped for 10 s
    assert live.tick() == [] and live.pauses == 1
    live.heard("n1", 1)  # its queued frames, read after the tick
    for _ in range(2):
        clk.mono += 1.0
        assert live.tick() == []
    # a child that really is silent is judged from the resume on
    for _ in range(4):
        clk.mono += 1.0
        live.tick()
    assert live.children["n1"].state == "down"
