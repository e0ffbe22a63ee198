"""PBS-style schedulers (Torque, OpenPBS, PBS Pro, Slurm's ``slurm-wlm-torque``
wrapper): ``qstat -f`` and ``pbsnodes -a``.

Neither command says which queue a node serves (PBS Pro's ``queue`` node
attribute aside), so nodes usually belong to the cluster-wide figures only; the
jobs keep their queue as their partition. A node is running jobs when its state
says so or when a running job's ``exec_host`` names it (the Slurm wrapper shows
a draining node as just ``draining``).
"""

from __future__ import annotations

import re
import time

from clumon.agent.scheduler import snapshot
from clumon.agent.scheduler.snapshot import (
    FINISHED, PENDING, RUNNING, SUSPENDED,
    Job, Node, ParseError, Snapshot)

COMMANDS = {"jobs": ["qstat", "-f"], "nodes": ["pbsnodes", "-a"]}

_JOB_STATES = {"Q": PENDING, "H": PENDING, "W": PENDING, "T": PENDING, "M": PENDING,
               "R": RUNNING, "E": RUNNING, "B": RUNNING,
               "S": SUSPENDED, "U": SUSPENDED}
_OFFLINE = frozenset({"down", "state-unknown", "unknown", "stale", "unresolvable", "provisioning",
                      "wait-provisioning", "powered-off", "powering-on", "powering-down", "sleep"})
_DRAINED = frozenset({"offline", "draining", "drained", "maintenance"})
_BUSY = frozenset({"job-exclusive", "job-busy", "job-sharing", "busy"})
_RESERVED = frozenset({"reserve", "reserved", "resv-exclusive"})

_ATTRIBUTE = re.compile(r"^\s+([A-Za-z][\w.]*) = ?(.*)$")
_NODES_PPN = re.compile(r"^(\d+)(?::ppn=(\d+))?")


def _records(text: str, header: re.Pattern) -> list[tuple[str, dict[str, str]]]:
    """Blocks of ``name`` then indented ``key = value`` lines; a long value goes on
    over further indented lines without `` = ``."""
    records: list[tuple[str, dict[str, str]]] = []
    attrs: dict[str, str] | None = None
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        m = header.match(line)
        if m is not None:
            attrs = {}
            records.append((m.group(1).strip(), attrs))
            continue
        if attrs is None:
            raise ParseError(f"unexpected line before the first record: {line[:200]!r}")
        a = _ATTRIBUTE.match(line)
        if a is not None:
            last = a.group(1)
            attrs[last] = a.group(2).strip()
        elif line[:1].isspace() and last:
            attrs[last] += line.strip()
        else:
            raise ParseError(f"unexpected line: {line[:200]!r}")
    return records


def _date(text: str | None) -> float | None:
    """An epoch number (Torque) or a ctime-style date (PBS Pro), local time."""
    if not text:
        return None
    if text.isdigit():
        return float(text) or None
    try:
        return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def exec_hosts(text: str) -> tuple[str, ...]:
    """Node names of ``exec_host``: ``n1/0+n1/1+n2/0`` or ``n1/0*2+n2/0*2``; in order, once each."""
    return tuple(dict.fromkeys(part.split("/")[0] for part in text.split("+") if part)) if text else ()


def _cores(attrs: dict[str, str]) -> int:
    ncpus = attrs.get("Resource_List.ncpus")
    if ncpus and ncpus.isdigit():
        return int(ncpus)
    m = _NODES_PPN.match(attrs.get("Resource_List.nodes", ""))
    if m is not None:
        return int(m.group(1)) * int(m.group(2) or 1)
    hosts = attrs.get("exec_host", "")
    return max(1, hosts.count("+") + 1) if hosts else 1


def parse_qstat(raw: bytes) -> list[Job]:
    jobs = []
    records = _records(raw.decode("utf-8", "replace"), re.compile(r"^Job Id:\s*(\S+)"))
    for jid, a in records:
        raw_state = a.get("job_state", "")
        state = _JOB_STATES.get(raw_state, FINISHED)
        user = (a.get("Job_Owner") or a.get("euser", "")).split("@")[0]
        if not raw_state or not user:
            raise ParseError(f"qstat -f: job {jid} has no job_state or owner")
        jobs.append(Job(
            jid, user, a.get("Account_Name") or user, tuple(a.get("queue", "").split(",")), state, raw_state,
            exec_hosts(a.get("exec_host", "")) if state != PENDING else (), _cores(a),
            _date(a.get("qtime") or a.get("ctime")),
            _date(a.get("start_time") or a.get("stime")) if state != PENDING else None,
            _date(a.get("comp_time") or a.get("obittime")) if state == FINISHED else None))
    return jobs


def node_state(words: set[str], running: bool) -> str:
    return snapshot.node_state(words, running, _OFFLINE, _DRAINED, _RESERVED)


def parse_pbsnodes(raw: bytes, busy_nodes: set[str] = frozenset()) -> list[Node]:
    """Nodes of ``pbsnodes -a``; ``busy_nodes`` are those running jobs say they use."""
    nodes = []
    for name, a in _records(raw.decode("utf-8", "replace"), re.compile(r"^(\S.*)$")):
        if "state" not in a:
            raise ParseError(f"pbsnodes -a: node {name} has no state")
        words = {w.strip() for w in a["state"].split(",")}
        cpus = a.get("resources_available.ncpus") or a.get("np") or a.get("pcpus") or "0"
        assigned = a.get("resources_assigned.ncpus", "0")
        running = (name in busy_nodes or bool(words & _BUSY) or bool(a.get("jobs"))
                   or (assigned.isdigit() and int(assigned) > 0))
        queue = a.get("queue", "")
        try:
            nodes.append(Node(name, (queue,) if queue else (), node_state(words, running), int(cpus), running))
        except ValueError:
            raise ParseError(f"pbsnodes -a: node {name}: cpus {cpus!r} is not a number") from None
    return nodes


class PbsAdapter:
    """PBS-style commands; no fallback."""

    kind = "pbs"
    commands = COMMANDS

    def fallback(self, stderr: str) -> bool:
        return False

    def parse(self, outputs: dict[str, bytes]) -> Snapshot:
        jobs = parse_qstat(outputs["jobs"])
        busy = {n for j in jobs if j.state == RUNNING for n in j.nodes}
        return Snapshot(tuple(parse_pbsnodes(outputs["nodes"], busy)), tuple(jobs))
