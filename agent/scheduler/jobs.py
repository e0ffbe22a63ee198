"""Jobs as they travel up: what changed since the last poll, as ``sched_jobs`` EVENTs.

The figures are series; the jobs themselves go as EVENTs, which the tree
already delivers end to end (spooled, replayed, acknowledged only once stored).
The root keeps one row per job from them (``root/jobs.py``).

Each poll sends the jobs that are new or changed (state, nodes, cores, times)
and the jobs that left the scheduler's listing without being seen to finish
(sent as finished, ``raw_state`` ``GONE``, ending at the poll that missed them).
The first poll after the agent starts, and one every ``sync_every`` seconds,
send every job listed, marked ``sync``: the root then ends the jobs of that
cluster it still holds as unfinished but that no sync mentioned -- jobs that
ended while the agent was away. A poll's jobs are cut into events of at most
``CHUNK`` jobs; the last event of a poll carries ``last``.

A job travels as a list (``FIELDS`` order) rather than a map: 20,000 jobs of
a first poll are ~2 MB that way.
"""

from __future__ import annotations

from typing import Iterable

from clumon.agent.scheduler.snapshot import FINISHED, Job, Snapshot
from clumon.proto.frames import Event

EVENT = "sched_jobs"
#: what each job list holds, in order
FIELDS = ("id", "user", "account", "partitions", "state", "raw_state", "nodes", "cores",
          "submit_time", "start_time", "end_time")
#: jobs per event: ~50 KB, far below any frame limit
CHUNK = 500
GONE = "GONE"


def as_list(job: Job) -> list:
    """One job in ``FIELDS`` order (partitions and nodes joined with commas)."""
    return [job.id, job.user, job.account, ",".join(job.partitions), job.state, job.raw_state,
            ",".join(job.nodes), job.cores, job.submit_time, job.start_time, job.end_time]


class JobTracker:
    """Remembers what the root was last sent about each job of one cluster."""

    def __init__(self, cluster: str, node: str, sync_every: float = 3600.0):
        self.cluster = cluster
        self.node = node
        self.sync_every = sync_every
        #: job id -> the list last sent for it (jobs still listed)
        self._sent: dict[str, list] = {}
        self._synced_at: float | None = None
        self.jobs_sent = 0

    def events(self, snapshot: Snapshot, now: float) -> list[Event]:
        """The events that bring the root up to this snapshot (none when nothing changed)."""
        sync = self._synced_at is None or now - self._synced_at >= self.sync_every
        listed = {job.id: as_list(job) for job in snapshot.jobs}
        if sync:
            changed = list(listed.values())
            self._synced_at = now
        else:
            changed = [row for jid, row in listed.items() if self._sent.get(jid) != row]
        for jid, row in self._sent.items():
            if jid not in listed and row[4] != FINISHED:
                changed.append([*row[:4], FINISHED, GONE, *row[6:10], row[10] or now])
        self._sent = listed
        self.jobs_sent += len(changed)
        if not changed and not sync:
            return []
        return list(self._chunks(changed, now, sync))

    def forget(self) -> None:
        """Send everything again at the next poll (the root may have lost track)."""
        self._synced_at = None

    def _chunks(self, rows: list[list], now: float, sync: bool) -> Iterable[Event]:
        pieces = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)] or [[]]
        for n, piece in enumerate(pieces, 1):
            attrs = {"cluster": self.cluster, "polled": now, "jobs": piece, "last": n == len(pieces)}
            if sync:
                attrs["sync"] = True
            what = "all jobs" if sync else "changed jobs"
            yield Event(EVENT, self.node, f"{self.cluster}: {what}, part {n} of {len(pieces)} ({len(piece)} jobs)", attrs)
