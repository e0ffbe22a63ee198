"""Liveness of a parent's direct children: up, suspect, down, restarted.

Pure bookkeeping (no sockets): ``heard`` is called for every frame from a child,
``tick`` about once a second; both return the transitions that happened, which
the caller turns into stored EVENTs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

UP = "up"
SUSPECT = "suspect"
DOWN = "down"
RESTARTED = "restarted"
UNREACHABLE = "unreachable"
STATES = (UP, SUSPECT, DOWN, RESTARTED, UNREACHABLE)
#: states in which a node cannot be reached
AWAY = (DOWN, UNREACHABLE)


@dataclass(frozen=True, slots=True)
class Transition:
    subject: str
    old: str | None
    new: str
    at: float  # wall-clock time of the transition
    incarnation: int
    last_heard: float  # wall-clock time of the last frame from the subject


@dataclass(slots=True)
class Child:
    name: str
    incarnation: int
    state: str
    since: float
    last_heard_mono: float
    last_heard_wall: float
    role: str = "agent"
    frames_in: int = 0
    extra: dict = field(default_factory=dict)
    #: seconds the child lets its ACKs wait to go as one (its HELLO's ``ack_every``)
    ack_every: float = 0.0
    #: its last frame was a HEARTBEAT (idle or draining): ACKs go at once until it
    #: sends a stored frame again
    prompt: bool = False
    #: when a frame of its newest incarnation last came (monotonic)
    newest_heard_mono: float = 0.0
    #: when a second live process with its name was last reported (monotonic)
    duplicate_reported: float = 0.0


class Liveness:
    """Tracks direct children by the time since their last frame."""

    def __init__(
        self,
        heartbeat_interval: float = 5.0,
        down_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        pause_after: float | None = None,
    ):
        self.suspect_after = 3 * heartbeat_interval
        self.down_after = down_after
        #: a gap this long between two ticks is a pause of ours (SIGSTOP, a VM frozen,
        #: a loop blocked), not our children's silence (None: every gap is theirs)
        self.pause_after = pause_after
        self._clock = clock
        self._wall = wall
        self.children: dict[str, Child] = {}
        self._last_tick = 0.0
        #: pauses of ours noticed, and their total length
        self.pauses = 0
        self.paused_s = 0.0

    def heard(self, name: str, incarnation: int) -> list[Transition]:
        """A frame arrived from ``name``: it is up (or restarted, when its
        incarnation is newer than the last one seen)."""
        mono, wall = self._clock(), self._wall()
        child = self.children.get(name)
        if child is None:
            self.children[name] = Child(name, incarnation, UP, wall, mono, wall, frames_in=1, newest_heard_mono=mono)
            return [Transition(name, None, UP, wall, incarnation, wall)]
        child.frames_in += 1
        if incarnation >= child.incarnation:
            child.newest_heard_mono = mono
        out: list[Transition] = []
        # Incarnations are start times: an older one is the new run replaying what
        # its killed predecessor left in the spool -- life, not another restart.
        if incarnation > child.incarnation:
            child.incarnation = incarnation
            out.append(self._move(child, RESTARTED, wall))
        elif child.state not in (UP, RESTARTED):  # restarted turns up at the next tick
            out.append(self._move(child, UP, wall))
        child.last_heard_mono = mono
        child.last_heard_wall = wall
        return out

    def _move(self, child: Child, new: str, at: float) -> Transition:
        t = Transition(child.name, child.state, new, at, child.incarnation, child.last_heard_wall)
        child.state = new
        child.since = at
        return t

    def tick(self) -> list[Transition]:
        """Children that went quiet become suspect, then down.

        Silence counts only while we listen: after a pause of ours the frames our
        children sent meanwhile are still queued, unread, so the pause is added to
        each child's last-heard time instead of being held against it.
        """
        mono, wall = self._clock(), self._wall()
        gap = mono - self._last_tick if self._last_tick else 0.0
        self._last_tick = mono
        if self.pause_after is not None and gap > self.pause_after:
            self.pauses += 1
            self.paused_s += gap
            for child in self.children.values():
                child.last_heard_mono += gap
        out = []
        for child in self.children.values():
            quiet = mono - child.last_heard_mono
            if child.state == RESTARTED:
                out.append(self._move(child, UP, wall))
            # A transition happened when the threshold passed, not when this tick
            # (late if the loop was busy) noticed it; min() guards a wall clock step.
            if quiet >= self.down_after and child.state != DOWN:
                out.append(self._move(child, DOWN, min(wall, child.last_heard_wall + self.down_after)))
            elif self.suspect_after <= quiet < self.down_after and child.state == UP:
                out.append(self._move(child, SUSPECT, min(wall, child.last_heard_wall + self.suspect_after)))
        return out

    def forget(self, name: str) -> bool:
        return self.children.pop(name, None) is not None
