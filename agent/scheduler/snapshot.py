"""What every adapter returns: the scheduler's nodes and jobs, in one shape.

A node's ``state`` is one of ``NODE_STATES`` (each node in exactly one, so the
counts add up to the total); a job's ``state`` is one of ``JOB_STATES``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: node states, most telling first: a down node that is also drained is offline
OFFLINE, ADMIN_DOWN, BUSY, RESERVED, IDLE = "offline", "admin_down", "busy", "reserved", "idle"
NODE_STATES = (OFFLINE, ADMIN_DOWN, BUSY, RESERVED, IDLE)

#: job states: running and pending count in the figures, suspended only in the
#: total, finished jobs (still listed for a while by the scheduler) not at all
RUNNING, PENDING, SUSPENDED, FINISHED = "running", "pending", "suspended", "finished"
JOB_STATES = (RUNNING, PENDING, SUSPENDED, FINISHED)


class ParseError(ValueError):
    """A command printed something its adapter cannot read."""


@dataclass(frozen=True, slots=True)
class Node:
    """One compute node as the scheduler sees it."""

    name: str
    partitions: tuple[str, ...]
    state: str
    cpus: int
    #: runs at least one job (a draining node may, while its state says admin_down)
    running: bool


@dataclass(frozen=True, slots=True)
class Job:
    """One job; times are Unix seconds or None when the scheduler has none yet."""

    id: str
    user: str
    #: the scheduler's account (Slurm account, PBS Account_Name, LSF project); the
    #: user when the job has none, so "accounts" always counts someone
    account: str
    #: the partitions (queues) it waits in or runs in; usually one
    partitions: tuple[str, ...]
    state: str
    #: the scheduler's own state word (RUNNING, Q, PEND, ...)
    raw_state: str
    nodes: tuple[str, ...]
    cores: int
    submit_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One poll of one cluster."""

    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Slurm's compressed host list as names: ``n[1-3,7],gpu01`` -> n1 n2 n3 n7 gpu01;
    several brackets in a name multiply (``r[1-2]n[1-2]`` -> r1n1 r1n2 r2n1 r2n2);
    leading zeros are kept."""
    if not text or text == "(null)":
        return ()
    names: list[str] = []
    for item in _top_level(text):
        names.extend(_expand(item))
    return tuple(n for n in names if n)


def _top_level(text: str) -> list[str]:
    """Split at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def _expand(name: str) -> list[str]:
    open_at = name.find("[")
    close_at = name.find("]", open_at)
    if open_at < 0 or close_at < 0:
        return [name]
    head, body, rest = name[:open_at], name[open_at + 1:close_at], _expand(name[close_at + 1:])
    out = []
    for part in body.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            numbers = [lo]
        else:
            width = len(lo) if lo.startswith("0") else 0
            numbers = [f"{i:0{width}d}" for i in range(int(lo), int(hi) + 1)]
        out.extend(f"{head}{n}{tail}" for n in numbers for tail in rest)
    return out


def node_state(words: set[str], running: bool, offline: frozenset[str], drained: frozenset[str],
               reserved: frozenset[str]) -> str:
    """A node's one state from the words a scheduler says about it, in order of
    precedence: offline, then drained (admin down, even while it runs jobs), then
    busy with jobs, then reserved, else idle. Each adapter names its own words."""
    if words & offline:
        return OFFLINE
    if words & drained:
        return ADMIN_DOWN
    if running:
        return BUSY
    if words & reserved:
        return RESERVED
    return IDLE
