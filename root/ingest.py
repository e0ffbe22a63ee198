"""From frames to committed rows to ACKs.

Frames are turned into rows on the event loop (cheap), committed in batches by
one writer thread (``Store.write`` blocks), and acknowledged down the tree only
after their commit. While the database is away, frames wait here (bounded), ACKs
are held back, the root keeps heartbeating, and one line a minute says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from clumon.proto import codec
from clumon.proto.frames import Ack, AckEntry, Data, Event, Frame, Hello, Kind, make, seq_ranges
from clumon.proto.runtime import QuietLog
from clumon.proto.tree import LatestCache
from clumon.root.registry import Registry
from clumon.root.storage import DictionaryRow, EventRow, FrameRow, LogRow, Store, StoreError, StoreUnavailable

log = logging.getLogger("clumon.root.ingest")

#: the "hop" of the root's own frames: stored like a node's, acknowledged to nobody
OWN = ""


@dataclass(slots=True)
class Pending:
    """A frame waiting for its commit, and the direct child its ACK goes to."""

    hop: str
    row: FrameRow | LogRow


class Ingest:
    """Rows for the writer, ACKs after commit, and the root's ingest figures."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        cache: LatestCache,
        send_ack: Callable[[str, Ack], None],
        ask_hello: Callable[[str, str], None],
        root_name: str,
        root_incarnation: int,
        commit_interval: float = 0.05,
        commit_max_frames: int = 20000,
        max_pending: int = 500_000,
        max_waiting: int = 100_000,
        max_waiting_bytes: int = 64 * 1024 * 1024,
    ):
        self.store = store
        self.registry = registry
        self.cache = cache
        self._send_ack = send_ack
        self._ask_hello = ask_hello
        self.root_name = root_name
        self.root_incarnation = root_incarnation
        self.commit_interval = commit_interval
        self.commit_max_frames = commit_max_frames
        self.max_pending = max_pending
        self.max_waiting = max_waiting
        self.max_waiting_bytes = max_waiting_bytes
        self._pending: list[Pending] = []
        self._keys: set[tuple[str, int, int]] = set()
        self._dicts: list[DictionaryRow] = []
        self._events: list[EventRow] = []
        self._waiting: dict[tuple[str, int, int], list[tuple[str, tuple[str, ...], Frame, bytes]]] = defaultdict(list)
        self._n_waiting = 0
        self._waiting_bytes = 0
        self._own_seq = 0
        self._own_frames_seq = 0
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sql-writer")
        self._quiet = QuietLog(log)
        self.db_ok = True
        self.db_error = ""
        # figures for `health`: frames of children (HELLO, DATA, EVENT, inside
        # BATCHes too) taken for storage = stored + pending + rejected; the root's
        # own frames (its health series and events) are counted apart
        self.frames_accepted = 0
        self.frames_stored = 0
        self.own_frames_stored = 0
        self.samples_in = 0
        #: log lines taken in LOG frames (before dedupe: the store counts what it kept)
        self.log_lines_in = 0
        self.frames_refused = 0
        self.frames_rejected = 0
        self.commit_errors = 0
        self.commits = 0
        self.last_commit_ms = 0.0
        #: sender -> (frames rejected since the last event about it, when that was)
        self._rejected_report: dict[str, tuple[int, float]] = {}
        self._rate: deque[tuple[float, int, int]] = deque(maxlen=120)
        #: told of every event once it is stored (the alert engine's event rules)
        self.on_stored_events: Callable[[list[EventRow]], None] | None = None

    # --- frames in ---------------------------------------------------------------------

    def accept(self, hop: str, path: tuple[str, ...], frame: Frame, raw: bytes) -> None:
        """Take one stored frame (HELLO, DATA, EVENT or LOG) that arrived via ``hop``."""
        key = (frame.sender, frame.incarnation, frame.seq)
        if key in self._keys:
            return  # already waiting for its commit; the ACK after it covers this copy
        if len(self._pending) >= self.max_pending:
            self.frames_refused += 1
            self._quiet.warn("refused", "holding %d frames for the database: refusing new ones "
                             "(their senders keep them and replay)", len(self._pending))
            return
        kind = frame.kind
        node_path = "/".join(path)
        if kind is Kind.LOG:
            # lines go to their own tables (root/storage/logs.py), not to frames
            self.log_lines_in += frame.body.line_count
        elif kind is Kind.DATA:
            if self.cache.names(frame.sender, frame.incarnation, frame.body.dict_version) is None:
                self._wait_for_hello(hop, path, frame, raw)
                return
            self.cache.data(frame)
            self.samples_in += len(frame.body.values) // 8
            dict_version = frame.body.dict_version
        elif kind is Kind.HELLO:
            body = frame.body
            self.cache.hello(frame)
            self._dicts.append(DictionaryRow(frame.sender, frame.incarnation, body.dict_version,
                                             body.series, body.inventory, body.role))
            self.registry.hello(frame.sender, node_path, frame.incarnation, frame.ts, body.role, body.inventory)
            dict_version = body.dict_version
        else:
            body = frame.body
            self._events.append(EventRow(frame.ts, body.subject, body.type, body.message, body.attrs,
                                         frame.sender, frame.incarnation, frame.seq))
            dict_version = None
            if body.type == "state":
                parent_path = "/".join(path + (frame.sender,))
                self._apply_state(body.subject, body.attrs, frame.ts, parent_path)
        event = self.registry.seen(frame.sender, node_path, frame.incarnation, frame.ts)
        if event:
            self.own_event("state", *event)
        self._keys.add(key)
        if hop != OWN:
            self.frames_accepted += 1
        if kind is Kind.LOG:
            row = LogRow(frame.sender, frame.incarnation, frame.seq, frame.ts, frame.body.files)
        else:
            row = FrameRow(frame.sender, frame.incarnation, frame.seq, frame.ts, int(kind), dict_version, raw)
        self._pending.append(Pending(hop, row))
        if kind is Kind.HELLO:
            self._release_waiting(frame)

    def _apply_state(self, subject: str, attrs: dict, ts: float, path: str) -> None:
        new = attrs.get("new")
        if not isinstance(new, str):
            return
        at = attrs.get("at", ts)
        inc = attrs.get("incarnation")
        event = self.registry.transition(subject, new, float(at) if isinstance(at, (int, float)) else ts,
                                         inc if isinstance(inc, int) else None, attrs.get("role"), path)
        if event:
            self.own_event("unreachable", *event)

    def _wait_for_hello(self, hop: str, path: tuple[str, ...], frame: Frame, raw: bytes) -> None:
        key = (frame.sender, frame.incarnation, frame.body.dict_version)
        if self._n_waiting >= self.max_waiting or self._waiting_bytes + len(raw) > self.max_waiting_bytes:
            # not acknowledged: its sender keeps it and replays it with its HELLO
            self.frames_refused += 1
            self._quiet.warn("waiting", "%d frames (%d bytes) wait for dictionaries: refusing more",
                             self._n_waiting, self._waiting_bytes)
            return
        if not self._waiting[key]:
            self._ask_hello(hop, frame.sender)
        self._waiting[key].append((hop, path, frame, raw))
        self._n_waiting += 1
        self._waiting_bytes += len(raw)

    def _release_waiting(self, hello: Frame) -> None:
        held = self._waiting.pop((hello.sender, hello.incarnation, hello.body.dict_version), [])
        self._n_waiting -= len(held)
        self._waiting_bytes -= sum(len(item[3]) for item in held)
        for item in held:
            self.accept(*item)

    def _next_own_seq(self) -> int:
        self._own_seq += 1
        return self._own_seq

    def note(self, type_: str, subject: str, message: str, attrs: dict) -> None:
        """Store an event the root itself observed about ``subject``."""
        self._events.append(EventRow(time.time(), subject, type_, message, attrs,
                                     self.root_name, self.root_incarnation, self._next_own_seq()))

    def own_event(self, type_: str, subject: str, old: str | None, new: str, attrs: dict) -> None:
        """A change of state the root itself observed (its children's liveness, subtrees lost)."""
        message = f"{subject}: {old or 'new'} -> {new}"
        if type_ == "unreachable":
            message = f"{subject} is down: {attrs.get('count', 0)} nodes behind it are unreachable"
        self.note(type_, subject, message, {"old": old, "new": new, **attrs})

    def own_frame(self, body: Hello | Data | Event) -> None:
        """Store one of the root's own frames (its health series, its own events), like a node's."""
        self._own_frames_seq += 1
        frame = make(self.root_name, self.root_incarnation, time.time(), body, self._own_frames_seq)
        self.accept(OWN, (), frame, codec.encode(frame))

    # --- commits -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Commit what is pending every ``commit_interval``; back off while the DB is
        away. Whatever a commit raises is logged, counted and survived: this task
        ending would leave the root heartbeating while it stores nothing."""
        backoff = self.commit_interval
        while True:
            await asyncio.sleep(backoff)
            try:
                ok = await self.commit_once()
            except Exception as exc:
                self.commit_errors += 1
                self._quiet.warn("commit", "commit failed (frames kept, not acknowledged): %r", exc)
                ok = False
            backoff = self.commit_interval if ok else min(max(backoff * 2, 0.25), 5.0)

    async def commit_once(self) -> bool:
        if not (self._pending or self._dicts or self._events or self.registry._dirty):
            return True
        batch = self._pending[: self.commit_max_frames]
        del self._pending[: len(batch)]
        dicts, self._dicts = self._dicts, []
        events, self._events = self._events, []
        nodes = self.registry.take_dirty()
        t0 = time.perf_counter()
        try:
            log_events = await asyncio.get_running_loop().run_in_executor(
                self._writer, self.store.write, [p.row for p in batch], dicts, events, nodes)
            if log_events:
                events = [*events, *log_events]
        except StoreUnavailable as exc:
            self._hold(batch, dicts, events, nodes, exc)
            return False
        except Exception as exc:
            # The database refused the data itself (StoreError), or writing it
            # raised (a bug, a value no driver takes): the same batch would fail
            # forever. Store what will go, frame by frame; what will not is
            # rejected, reported and never acknowledged.
            if not isinstance(exc, StoreError):
                self.commit_errors += 1
                log.error("writing a batch of %d frames failed", len(batch), exc_info=exc)
            else:
                log.error("database refused a batch of %d frames: %s; retrying them one by one", len(batch), exc)
            try:
                batch = await self._salvage(batch, dicts, events, nodes)
            except StoreUnavailable as exc:
                self._hold(batch, dicts, events, nodes, exc)
                return False
        if not self.db_ok:
            log.warning("database is back: storing %d held frames", len(batch) + len(self._pending))
        self.db_ok, self.db_error = True, ""
        self.commits += 1
        self.last_commit_ms = (time.perf_counter() - t0) * 1000
        own = 0
        for p in batch:
            self._keys.discard((p.row.node, p.row.incarnation, p.row.seq))
            own += p.hop == OWN
        self.frames_stored += len(batch) - own
        self.own_frames_stored += own
        self._rate.append((time.monotonic(), self.frames_stored, self.samples_in))
        self._acknowledge(batch)
        if events and self.on_stored_events is not None:
            try:
                self.on_stored_events(events)
            except Exception:  # a listener's bug must not stop commits
                log.exception("an event listener failed")
        return True

    def _hold(self, batch: list[Pending], dicts, events, nodes, exc: Exception) -> None:
        """The database is away: keep everything for the next try, ACKs held back."""
        self._pending[:0] = batch
        self._dicts[:0] = dicts
        self._events[:0] = events
        self.registry.put_back(nodes)
        if self.db_ok:
            log.error("database unavailable: %s; holding frames and acks until it returns", exc)
        self.db_ok, self.db_error = False, str(exc)
        self._quiet.warn("db", "database still unavailable (%d frames held): %s", len(self._pending), exc)

    async def _salvage(self, batch: list[Pending], dicts, events, nodes) -> list[Pending]:
        """Write a refused batch piece by piece; returns the frames that were stored.

        A frame the database refuses is dropped here and NOT acknowledged: its
        sender keeps it (and replays it after a reconnect), so it is reported, never
        lost in silence. Each is counted in ``frames_rejected`` and reported as an
        EVENT ``frames_rejected`` (at most once a minute per sender).
        """
        loop = asyncio.get_running_loop()
        stored = []
        for p in batch:
            try:
                await loop.run_in_executor(self._writer, self.store.write, [p.row], [], [], [])
                stored.append(p)
            except StoreUnavailable:
                raise  # the caller holds the whole batch (writes are idempotent)
            except Exception as exc:
                self._reject(p, exc)
        try:
            await loop.run_in_executor(self._writer, self.store.write, [], dicts, events, nodes)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.error("database rejected %d dictionaries, %d events, %d node rows: %s",
                      len(dicts), len(events), len(nodes), exc)
        return stored

    def _reject(self, p: Pending, exc: Exception) -> None:
        """Count and report a frame the database will not take; it is not acknowledged."""
        self.frames_rejected += 1
        self._keys.discard((p.row.node, p.row.incarnation, p.row.seq))
        self._quiet.warn("rejected", "database rejected frame %s/%d/%d (not acknowledged): %s",
                         p.row.node, p.row.incarnation, p.row.seq, exc)
        count, last = self._rejected_report.get(p.row.node, (0, 0.0))
        now = time.monotonic()
        if now - last < 60.0:
            self._rejected_report[p.row.node] = (count + 1, last)
            return
        self._rejected_report[p.row.node] = (0, now)
        self.note("frames_rejected", p.row.node,
                  f"{p.row.node}: the database rejected {count + 1} frame(s), not acknowledged (kept by the sender)",
                  {"count": count + 1, "incarnation": p.row.incarnation, "seq": p.row.seq, "error": str(exc)[:500]})

    async def run_upkeep(self, every: float) -> None:
        """Rollup flushes, compaction and retention, on the writer thread between commits."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            try:
                done = await loop.run_in_executor(self._writer, self.store.maintain)
            except StoreError as exc:
                self._quiet.warn("upkeep", "storage upkeep failed: %s", exc)
                continue
            if done and any(done.values()):
                log.info("storage upkeep: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))

    def _acknowledge(self, batch: list[Pending]) -> None:
        by_hop: dict[str, dict[tuple[str, int], list[int]]] = defaultdict(lambda: defaultdict(list))
        for p in batch:
            by_hop[p.hop][(p.row.node, p.row.incarnation)].append(p.row.seq)
        by_hop.pop(OWN, None)  # the root's own frames need no ACK
        for hop, groups in by_hop.items():
            entries = tuple(AckEntry(node, inc, seq_ranges(seqs)) for (node, inc), seqs in groups.items())
            self._send_ack(hop, Ack(entries))

    def rates(self) -> dict[str, float]:
        """Frames and samples per second over the last ~10 s of commits."""
        now = time.monotonic()
        recent = [r for r in self._rate if now - r[0] <= 10.0]
        if len(recent) < 2:
            return {"frames_per_s": 0.0, "samples_per_s": 0.0}
        (t0, f0, s0), (t1, f1, s1) = recent[0], recent[-1]
        dt = max(t1 - t0, 1e-6)
        return {"frames_per_s": (f1 - f0) / dt, "samples_per_s": (s1 - s0) / dt}

    def close(self) -> None:
        self._writer.shutdown(wait=True)
