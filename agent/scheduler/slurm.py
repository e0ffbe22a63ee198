"""Slurm: ``squeue --json`` and ``sinfo --json`` (Slurm 21.08 to 22.05, OpenAPI
v0.0.37/38), and ``-o`` format strings for a Slurm without ``--json``.

Slurm 23.02 and later print the same jobs with a few fields wrapped
(``{"set": true, "number": 4}``) and states as lists (``["IDLE", "DRAIN"]``);
both shapes are read where they differ in a field used here. Their ``sinfo
--json`` is another document (``sinfo``: entries of a partition's nodes in one
state, one node each under ``-N``), read by ``_sinfo_entries``.
"""

from __future__ import annotations

import json
from datetime import datetime

from clumon.agent.scheduler import snapshot
from clumon.agent.scheduler.snapshot import (
    FINISHED, PENDING, RUNNING, SUSPENDED,
    Job, Node, ParseError, Snapshot, expand_hostlist)

#: ``-N``: one entry per node and partition from Slurm 23.02 on (whose ``--json``
#: otherwise groups nodes); 22.05 prints its node list either way
JSON_COMMANDS = {"jobs": ["squeue", "--json"], "nodes": ["sinfo", "-N", "--json"]}
JOB_FORMAT = "%i|%u|%a|%P|%T|%N|%C|%V|%S|%e"
NODE_FORMAT = "%N|%P|%T|%c|%C"
TEXT_COMMANDS = {"jobs": ["squeue", "-h", "-a", "-o", JOB_FORMAT],
                 "nodes": ["sinfo", "-h", "-N", "-o", NODE_FORMAT]}

#: a node in any of these (base state or flag) is offline: down, not answering,
#: powered off or not yet on
_OFFLINE = frozenset({"DOWN", "NOT_RESPONDING", "UNKNOWN", "FUTURE", "ERROR", "POWERED_DOWN",
                      "POWER_DOWN", "POWERING_UP", "POWERING_DOWN", "INVAL"})
_DRAINED = frozenset({"DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING"})
_ALLOCATED = frozenset({"ALLOCATED", "MIXED"})
_RESERVED = frozenset({"RESERVED", "MAINTENANCE", "MAINT", "PLANNED"})

_JOB_STATES = {
    "RUNNING": RUNNING, "CONFIGURING": RUNNING, "RESIZING": RUNNING, "SIGNALING": RUNNING,
    "PENDING": PENDING, "REQUEUED": PENDING, "REQUEUE_HOLD": PENDING, "REQUEUE_FED": PENDING,
    "RESV_DEL_HOLD": PENDING, "SPECIAL_EXIT": PENDING,
    "SUSPENDED": SUSPENDED, "STOPPED": SUSPENDED,
}

#: the text format's suffixes on a node state (``idle~``, ``down*``)
_SUFFIX_FLAGS = {"*": "NOT_RESPONDING", "~": "POWERED_DOWN", "#": "POWERING_UP", "%": "POWERING_DOWN",
                 "!": "POWER_DOWN", "$": "MAINTENANCE", "-": "PLANNED"}


def node_state(words: set[str], running: bool) -> str:
    """The one state of a node from its base state and flags (upper case)."""
    return snapshot.node_state(words, running, _OFFLINE, _DRAINED, _RESERVED)


def job_state(word: str) -> str:
    return _JOB_STATES.get(word, FINISHED)


def _number(value) -> int:
    """An integer field: a plain number (22.05) or ``{"set", "number"}`` (23.02+)."""
    if isinstance(value, dict):
        return int(value.get("number") or 0) if value.get("set", True) else 0
    return int(value or 0)


def _time(value) -> float | None:
    seconds = _number(value)
    return float(seconds) if seconds > 0 else None


def _words(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or ())


#: the fields read of a job and of a node; the rest is dropped as each entry is decoded,
#: as a 22.05 job has ~110 fields and a large site's poll would hold them all at once
#: (bench/scheduler_parse.py, figures in bench/README.md)
_JOB_FIELDS = ("job_id", "user_name", "user_id", "account", "partition", "job_state", "nodes", "cpus",
               "submit_time", "start_time", "end_time")
_NODE_FIELDS = ("name", "state", "state_flags", "alloc_cpus", "cpus", "partitions")


def _keeping(marker: str, keep: tuple[str, ...]):
    """A json object_hook that trims each entry (an object with ``marker``) to ``keep``."""
    def hook(obj: dict) -> dict:
        return {k: obj[k] for k in keep if k in obj} if marker in obj else obj
    return hook


_HOOKS = {"jobs": _keeping("job_id", _JOB_FIELDS), "nodes": _keeping("state", _NODE_FIELDS)}


def _document(raw: bytes, key: str, command: str, other: str = "") -> tuple[str, list]:
    """The list under ``key`` (or under ``other``, a later Slurm's name for it)."""
    try:
        doc = json.loads(raw, object_hook=_HOOKS[key])
    except ValueError as exc:
        raise ParseError(f"{command}: not JSON: {exc}") from None
    for name in (key, other):
        items = doc.get(name) if name and isinstance(doc, dict) else None
        if isinstance(items, list):
            return name, items
    raise ParseError(f"{command}: no {key!r} list in its JSON")


def parse_sinfo_json(raw: bytes) -> list[Node]:
    key, items = _document(raw, "nodes", "sinfo --json", other="sinfo")
    if key == "sinfo":
        return _sinfo_entries(items)
    nodes = []
    try:
        for n in items:
            words = {w.upper() for w in (*_words(n.get("state")), *n.get("state_flags", ()))}
            running = _number(n.get("alloc_cpus")) > 0 or bool(words & _ALLOCATED)
            nodes.append(Node(n["name"], tuple(n.get("partitions") or ()), node_state(words, running),
                              _number(n.get("cpus")), running))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ParseError(f"sinfo --json: unexpected node entry: {exc!r}") from None
    return nodes


def _sinfo_entries(items: list) -> list[Node]:
    """Slurm 23.02+'s ``sinfo`` list: one entry per group of nodes of one partition
    and state (one node each under ``-N``), a node listed once per partition."""
    seen: dict[str, Node] = {}
    try:
        for e in items:
            names = [n for text in e["nodes"]["nodes"] for n in expand_hostlist(text)]
            if not names:
                continue
            cpus = e.get("cpus") or {}
            words = {w.upper() for w in _words((e.get("node") or {}).get("state"))}
            alone = len(names) == 1
            running = bool(words & _ALLOCATED) or (alone and _number(cpus.get("allocated")) > 0)
            per_node = _number(cpus.get("total")) // len(names)
            partition = ((e.get("partition") or {}).get("name")) or ""
            for name in names:
                old = seen.get(name)
                parts = (*old.partitions, partition) if old else (partition,)
                seen[name] = Node(name, tuple(p for p in dict.fromkeys(parts) if p), node_state(words, running),
                                  per_node, running)
    except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError) as exc:
        raise ParseError(f"sinfo --json: unexpected entry: {exc!r}") from None
    return list(seen.values())


def parse_squeue_json(raw: bytes) -> list[Job]:
    jobs = []
    try:
        for j in _document(raw, "jobs", "squeue --json")[1]:
            raw_state = _words(j.get("job_state"))[0]
            state = job_state(raw_state)
            user = j.get("user_name") or str(j.get("user_id", ""))
            jobs.append(Job(
                str(j["job_id"]), user, j.get("account") or user, tuple(j.get("partition", "").split(",")),
                state, raw_state, expand_hostlist(j.get("nodes") or "") if state != PENDING else (),
                _number(j.get("cpus")), _time(j.get("submit_time")),
                _time(j.get("start_time")) if state != PENDING else None,
                _time(j.get("end_time")) if state == FINISHED else None))
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise ParseError(f"squeue --json: unexpected job entry: {exc!r}") from None
    return jobs


def _text_time(text: str) -> float | None:
    if text in ("", "N/A", "NONE", "Unknown"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _fields(raw: bytes, count: int, command: str):
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != count:
            raise ParseError(f"{command}: expected {count} fields, got {line[:200]!r}")
        yield fields


def parse_sinfo_text(raw: bytes) -> list[Node]:
    """``sinfo -h -N -o '%N|%P|%T|%c|%C'``: a line per node and partition."""
    by_name: dict[str, tuple[list[str], str, int, bool]] = {}
    try:
        for name, partition, state, cpus, cpu_counts in _fields(raw, 5, "sinfo"):
            base = state.rstrip("*~#%!$-@^+")
            words = {base.upper(), *(_SUFFIX_FLAGS[c] for c in state[len(base):] if c in _SUFFIX_FLAGS)}
            allocated = int(cpu_counts.split("/")[0])
            running = allocated > 0 or bool(words & _ALLOCATED)
            entry = by_name.setdefault(name, ([], node_state(words, running), int(cpus), running))
            entry[0].append(partition.rstrip("*"))
    except ValueError as exc:
        raise ParseError(f"sinfo: unexpected line: {exc}") from None
    return [Node(name, tuple(parts), state, cpus, running)
            for name, (parts, state, cpus, running) in by_name.items()]


def parse_squeue_text(raw: bytes) -> list[Job]:
    """``squeue -h -a -o '%i|%u|%a|%P|%T|%N|%C|%V|%S|%e'``."""
    jobs = []
    try:
        for jid, user, account, partition, raw_state, nodes, cpus, submit, start, end in _fields(raw, 10, "squeue"):
            state = job_state(raw_state)
            account = "" if account == "(null)" else account
            jobs.append(Job(jid, user, account or user, tuple(partition.split(",")), state, raw_state,
                            expand_hostlist(nodes) if state != PENDING else (), int(cpus), _text_time(submit),
                            _text_time(start) if state != PENDING else None,
                            _text_time(end) if state == FINISHED else None))
    except ValueError as exc:
        raise ParseError(f"squeue: unexpected line: {exc}") from None
    return jobs


class SlurmAdapter:
    """Slurm through its JSON output, or its ``-o`` formats where ``--json`` is
    unknown (Slurm before 21.08): the first such refusal switches for good."""

    kind = "slurm"

    def __init__(self, use_json: bool = True):
        self.use_json = use_json

    @property
    def commands(self) -> dict[str, list[str]]:
        return JSON_COMMANDS if self.use_json else TEXT_COMMANDS

    def fallback(self, stderr: str) -> bool:
        """Whether a failed command asks for the text formats (and switch to them)."""
        if self.use_json and "json" in stderr and ("unrecognized" in stderr or "invalid option" in stderr):
            self.use_json = False
            return True
        return False

    def parse(self, outputs: dict[str, bytes]) -> Snapshot:
        if self.use_json:
            return Snapshot(tuple(parse_sinfo_json(outputs["nodes"])), tuple(parse_squeue_json(outputs["jobs"])))
        return Snapshot(tuple(parse_sinfo_text(outputs["nodes"])), tuple(parse_squeue_text(outputs["jobs"])))
