"""IBM Spectrum LSF: ``bjobs -json -o ...`` and ``bhosts -w``.

``bhosts`` does not say which queues a host serves, so hosts belong to the
cluster-wide figures only; jobs keep their queue as their partition. Times
print without a year (``Dec  4 22:10``, an ``E``/``L`` mark after estimated
or late ones): the year is the one that puts the time nearest before now.
"""

from __future__ import annotations

import json
import time

from clumon.agent.scheduler.snapshot import (
    ADMIN_DOWN, BUSY, FINISHED, IDLE, OFFLINE, PENDING, RESERVED, RUNNING, SUSPENDED,
    Job, Node, ParseError, Snapshot)

JOB_FIELDS = "jobid user stat queue slots exec_host submit_time start_time finish_time project"
COMMANDS = {"jobs": ["bjobs", "-u", "all", "-a", "-json", "-o", JOB_FIELDS], "nodes": ["bhosts", "-w"]}
HOST_COLUMNS = ("HOST_NAME", "STATUS", "JL/U", "MAX", "NJOBS", "RUN", "SSUSP", "USUSP", "RSV")

_JOB_STATES = {"PEND": PENDING, "PSUSP": PENDING, "WAIT": PENDING,
               "RUN": RUNNING, "PROV": RUNNING, "UNKWN": RUNNING,
               "USUSP": SUSPENDED, "SSUSP": SUSPENDED}
_OFFLINE = frozenset({"unavail", "unreach", "closed_LIM", "closed_EGO", "unlicensed", "closed_Cu_excl_down"})
_DRAINED = frozenset({"closed_Adm", "closed_Lock"})


def _time(text: str, now: float) -> float | None:
    words = text.split()
    if words and words[-1] in ("E", "L", "X"):
        words.pop()
    if len(words) < 3:
        return None
    this_year = time.localtime(now).tm_year
    for fmt, stamp in (("%b %d %H:%M:%S %Y", " ".join(words)),
                       ("%b %d %H:%M %Y", " ".join([*words[:3], str(this_year)]))):
        try:
            t = time.mktime(time.strptime(stamp, fmt))
        except ValueError:
            continue
        if len(words) == 3 and t > now + 86400:  # a date of last year seen in January
            t = time.mktime(time.strptime(" ".join([*words[:3], str(this_year - 1)]), fmt))
        return t
    return None


def exec_hosts(text: str) -> tuple[str, ...]:
    """``8*hosta01:4*hosta03`` (or space separated): the host names, once each."""
    parts = text.replace(" ", ":").split(":") if text and text != "-" else []
    return tuple(dict.fromkeys(p.split("*")[-1] for p in parts if p))


def parse_bjobs(raw: bytes, now: float | None = None) -> list[Job]:
    now = time.time() if now is None else now
    try:
        doc = json.loads(raw)
        records = doc["RECORDS"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"bjobs -json: not its JSON: {exc!r}") from None
    jobs = []
    try:
        for r in records:
            if "ERROR" in r:  # a job that vanished between listing and reading
                continue
            raw_state = r["STAT"]
            state = _JOB_STATES.get(raw_state, FINISHED)
            user = r["USER"]
            project = r.get("PROJECT", "")
            slots = r.get("SLOTS", "")
            jobs.append(Job(
                str(r["JOBID"]), user, project if project not in ("", "-") else user, (r["QUEUE"],),
                state, raw_state, exec_hosts(r.get("EXEC_HOST", "")) if state != PENDING else (),
                int(slots) if str(slots).isdigit() else 1, _time(r.get("SUBMIT_TIME", ""), now),
                _time(r.get("START_TIME", ""), now) if state != PENDING else None,
                _time(r.get("FINISH_TIME", ""), now) if state == FINISHED else None))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"bjobs -json: unexpected record: {exc!r}") from None
    return jobs


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0


def parse_bhosts(raw: bytes) -> list[Node]:
    lines = [line.split() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines or tuple(lines[0]) != HOST_COLUMNS:
        raise ParseError(f"bhosts -w: expected the header {' '.join(HOST_COLUMNS)}, got {' '.join(lines[0]) if lines else 'nothing'}")
    nodes = []
    for fields in lines[1:]:
        if len(fields) != len(HOST_COLUMNS):
            raise ParseError(f"bhosts -w: expected {len(HOST_COLUMNS)} columns, got {' '.join(fields)[:200]!r}")
        name, status, _, slots, _, run, _, _, reserved = fields
        running = _count(run) > 0
        if status in _OFFLINE:
            state = OFFLINE
        elif status in _DRAINED:
            state = ADMIN_DOWN
        elif running:
            state = BUSY
        elif _count(reserved) > 0:
            state = RESERVED
        else:
            state = IDLE
        nodes.append(Node(name, (), state, _count(slots), running))
    return nodes


class LsfAdapter:
    """LSF 10.1's commands; no fallback."""

    kind = "lsf"
    commands = COMMANDS

    def fallback(self, stderr: str) -> bool:
        return False

    def parse(self, outputs: dict[str, bytes]) -> Snapshot:
        return Snapshot(tuple(parse_bhosts(outputs["nodes"])), tuple(parse_bjobs(outputs["jobs"])))
