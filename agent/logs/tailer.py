"""The files of the ``[[log]]`` sources, each read from where it was left.

A file is known by its device and inode while it is open, and by a fingerprint
(a hash of its first line, at most ``FP_BYTES``) across restarts, renames and
copies. Each generation of a file (a new file, or the same inode after a
truncation) gets its own ``fid``; ``(fid, offset)`` names a line for good.

* **Rename** (``app.log`` -> ``app.log.1``): the open descriptor still reads the
  old file; a path that no longer leads to it makes it *gone*, and a gone file is
  read to its end before it is let go. Under a glob that matches the new name it
  is the same file under a new path.
* **copytruncate**: a file shorter than the position, or whose first line
  changed, is a new generation (read from 0); the old one is *retired* with its
  position, and a copy that appears with its fingerprint (``app.log.1``)
  continues it from there, so the lines written between the last read and the
  truncation are read from the copy.
* **Deletion**: like a rename out of the glob: the descriptor reads to the end.
* **Inode reuse**: a file whose fingerprint differs from the one recorded for its
  inode is a new file.
* **Restart**: the positions kept are the ones the root acknowledged; each kept
  file is found again by inode and fingerprint (also renamed out of its glob, in
  its directory), or by fingerprint alone (a copy), and read on from there.

Everything here runs in the log watch's own thread; ``acked`` is the one method
called from the event loop (it sets an int).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clumon.proto.frames import LogFile

from . import parse, reader
from .files import Tracked, digest, fingerprint, new_fid
from .config import LogConfig
from .rules import Rule, line_starts, matches

log = logging.getLogger("clumon.agent.logs")

#: bytes read at once
READ_CHUNK = 1024 * 1024
#: at most this much of one file a poll (a backlog is read over several)
READ_PER_POLL = 8 * 1024 * 1024
#: an open multiline record (or unterminated last line of a gone file) is sent after this long without growth
FLUSH_AFTER = 2.0
#: a gone file (renamed away, deleted) read to its end is let go after this long without growth
GONE_GRACE = 5.0
#: retired generations and files not found after a restart are kept this long for a copy to continue them
RETIRED_KEEP = 3600.0
MAX_RETIRED = 1000
STATE_VERSION = 1
#: rotated files compressed by logrotate: never read as lines (a glob like app.log* matches them)
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".Z")
#: polls between two readings of the globs (a moved or vanished path triggers one at once)
SCAN_EVERY = 5


@dataclass(slots=True)
class Source:
    """One ``[[log]]`` table, compiled, with its rate limit's bucket and figures."""

    cfg: LogConfig
    name: str
    parser: parse.Parser | None
    start: re.Pattern | None
    include: re.Pattern | None
    exclude: re.Pattern | None
    tokens: float = 0.0
    refilled: float = 0.0
    limited: bool = False
    lines_total: int = 0
    excluded_total: int = 0
    held_episodes: int = 0
    backlog_bytes: int = 0
    files: int = 0

    @classmethod
    def of(cls, cfg: LogConfig) -> "Source":
        c = (lambda p: re.compile(p) if p else None)
        return cls(cfg, cfg.name, parse.parser(cfg.format, cfg.regex), c(cfg.multiline_start),
                   c(cfg.include), c(cfg.exclude))

    def refill(self, now: float, burst_s: float = 1.0) -> None:
        """A token bucket holding ``burst_s`` seconds of the rate (a look every 2 s
        may take 2 s worth of lines: the rate holds whatever the poll interval)."""
        rate = self.cfg.rate_limit
        if rate > 0:
            cap = rate * burst_s
            self.tokens = min(cap, self.tokens + (now - self.refilled) * rate) if self.refilled else cap
            self.refilled = now


@dataclass(slots=True)
class PollResult:
    chunks: list[LogFile] = field(default_factory=list)
    #: where each chunk's reading began (its file's position before it; <= its first offset)
    starts: list[int] = field(default_factory=list)
    events: list[tuple[str, str, dict]] = field(default_factory=list)
    counted: bool = False
    #: bytes read by this poll, and whether some file has more to read now
    read_bytes: int = 0
    more: bool = False


class Tailer:
    """Reads the sources' files on each ``poll``; see the module docstring."""

    def __init__(self, sources: tuple[LogConfig, ...], rules: list[Rule], state_dir: Path | None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 scan_every: int = SCAN_EVERY, burst_s: float = 1.0):
        """``scan_every``: the globs are read every this many polls (new files), and
        at once when a path no longer leads to the file read through it."""
        self.scan_every = max(1, scan_every)
        #: a rate-limited source may take this many seconds of its rate at one look
        self.burst_s = max(1.0, burst_s)
        self.sources = [Source.of(c) for c in sources]
        self._by_name = {s.name: s for s in self.sources}
        self.rules = rules
        self._event_rules = {r.name for r in rules if r.event}
        self._clock = clock
        self._wall = wall
        self.state_path = None if state_dir is None else Path(state_dir) / "logs" / "positions.json"
        #: open files by (device, inode)
        self.files: dict[tuple[int, int], Tracked] = {}
        #: every generation known, open or retired, by fid (acks find theirs here)
        self.by_fid: dict[int, Tracked] = {}
        self.retired: list[Tracked] = []
        self.counters: dict[tuple[str, str], int] = {}
        self._first = True
        self._dirty = False
        self._saved_at = 0.0
        self._warned: set[str] = set()
        self.polls = 0
        self.cpu_s = 0.0
        self._load()

    # --- positions ----------------------------------------------------------------------

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            doc = json.loads(self.state_path.read_text())
            assert doc.get("version") == STATE_VERSION
            now = self._clock()
            for f in doc["files"]:
                t = Tracked(int(f["fid"]), str(f["source"]), str(f["path"]), int(f["dev"]), int(f["ino"]),
                            str(f["fp"]), int(f["fp_len"]), int(f["acked"]), int(f["acked"]), int(f["counted"]),
                            int(f["acked"]), retired=True, since=now)
                self.retired.append(t)
                self.by_fid[t.fid] = t
            for source, rule, n in doc.get("counters", []):
                self.counters[(str(source), str(rule))] = int(n)
        except Exception as exc:  # a torn or foreign file: start afresh, loudly
            log.error("log positions %s unreadable (%s): files are read from their start again", self.state_path, exc)

    def save(self) -> None:
        """Write the positions (atomically: a new file renamed over the old)."""
        if self.state_path is None:
            return
        doc = {"version": STATE_VERSION,
               "files": [t.state() for t in [*self.files.values(), *self.retired]],
               "counters": [[s, r, n] for (s, r), n in sorted(self.counters.items())]}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self._warn("save", "cannot keep log positions in %s: %s", self.state_path, exc)
            return
        self._dirty = False
        self._saved_at = self._clock()

    def acked(self, fid: int, start: int, end: int) -> None:
        """The root stored the chunk of ``fid`` read from ``start`` to ``end`` (called
        from the loop). The kept position moves only over acknowledged chunks
        without a gap: one acknowledged before an earlier one waits in ``ahead``."""
        t = self.by_fid.get(fid)
        if t is None or end <= t.acked:
            return
        if start > t.acked:
            t.ahead[start] = max(end, t.ahead.get(start, 0))
            return
        t.acked = end
        while t.ahead:
            nxt = [s for s in t.ahead if s <= t.acked]
            if not nxt:
                break
            for s in nxt:
                t.acked = max(t.acked, t.ahead.pop(s))
        self._dirty = True

    def rewind(self, fid: int, start: int) -> bool:
        """Read ``fid`` again from ``start``: a frame of its lines was dropped before
        the root acknowledged it. False when the file is let go (the loss stands,
        reported by the spool)."""
        t = self.by_fid.get(fid)
        if t is None:
            return False
        if start < t.pos:
            t.pos, t.long_at, t.long_head, t.held_since = start, -1, b"", 0.0
        t.sent_to = min(t.sent_to, start)
        return True

    # --- polling ------------------------------------------------------------------------

    def poll(self, budget: int = 64 * READ_PER_POLL) -> PollResult:
        """Look at every file once: new, renamed, truncated, gone; read what is new
        (at most READ_PER_POLL of a file and ``budget`` in all)."""
        c0 = time.thread_time()
        now = self._clock()
        out = PollResult()
        for s in self.sources:
            s.refill(now, self.burst_s)
        for t in list(self.files.values()):
            self._check(t, now)
        if self.polls % self.scan_every == 0 or self._paths_moved():
            self._scan(now)
        if self._first:
            self._find_moved()
            self._first = False
        for s in self.sources:
            s.backlog_bytes = 0
            s.files = 0
        for key, t in list(self.files.items()):
            src = self._by_name.get(t.source)
            if src is None:
                continue
            try:
                self._read(t, src, now, out, budget - out.read_bytes)
            except OSError as exc:
                self._warn(t.path, "reading %s failed: %s", t.path, exc)
            if t.gone and t.pos >= t.last_size and t.long_at < 0 and not t.held_since:
                # a logger may write on to a renamed file until it reopens: let go
                # only after GONE_GRACE without growth
                if not t.gone_idle or t.last_size != t.gone_size:
                    t.gone_idle, t.gone_size = now, t.last_size
                elif now - t.gone_idle >= GONE_GRACE:
                    self._let_go(key, t)
        self._expire(now)
        if out.counted or (self._dirty and now - self._saved_at >= 2.0):
            self.save()
        self.polls += 1
        self.cpu_s += time.thread_time() - c0
        return out

    def _check(self, t: Tracked, now: float) -> None:
        """Truncated, or its content replaced (first line changed)? Then a new generation."""
        st = os.fstat(t.fd)
        size = st.st_size
        replaced = size < t.pos
        stat = (size, st.st_mtime_ns)
        if not replaced and t.fp and stat != t.last_stat:
            # truncated and written again past the position between two looks
            replaced = digest(os.pread(t.fd, t.fp_len, 0)) != t.fp
        t.last_stat = stat
        if replaced:
            log.info("%s was truncated at %d (copytruncate?): reading it anew", t.path, t.pos)
            new = Tracked(new_fid(), t.source, t.path, t.dev, t.ino, fd=t.fd)
            t.fd, t.retired, t.since = None, True, now
            self.retired.append(t)
            self.files[(t.dev, t.ino)] = new
            self.by_fid[new.fid] = new
            self._dirty = True

    def _paths_moved(self) -> bool:
        """Whether a file's path leads elsewhere now (rotated, deleted): one stat
        a file, cheaper than reading the globs' directories every poll."""
        for (dev, ino), t in self.files.items():
            if t.gone:
                continue
            try:
                st = os.stat(t.path)
            except OSError:
                return True
            if (st.st_dev, st.st_ino) != (dev, ino):
                return True
        return False

    def _scan(self, now: float) -> None:
        seen: set[tuple[int, int]] = set()
        for src in self.sources:
            for path in sorted(glob.glob(src.cfg.path)):
                if path.endswith(COMPRESSED):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not os.path.isfile(path):
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                t = self.files.get(key)
                if t is not None:
                    if t.path != path:
                        log.info("%s is now %s", t.path, path)
                        t.path = path
                        self._dirty = True
                    t.gone = False
                    continue
                self._found(path, st, src, now)
        for key, t in self.files.items():
            if key not in seen and not t.gone:
                log.info("%s no longer leads to the file read (rotated or deleted): reading it to its end", t.path)
                t.gone = True

    def _found(self, path: str, st: os.stat_result, src: Source, now: float) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._warn(path, "cannot open %s: %s", path, exc)
            return
        fp, fp_len = fingerprint(fd)
        key = (st.st_dev, st.st_ino)
        if fp:
            if any(o.fp == fp and not o.gone for o in self.files.values()):
                os.close(fd)  # a copy of a file read now: continued if that one is truncated
                return
            old = self._retired_match(fp, key, st.st_size)
            if old is not None:
                self.retired.remove(old)
                old.dev, old.ino, old.path, old.fd, old.retired = st.st_dev, st.st_ino, path, fd, False
                old.pos = max(old.pos, old.acked)
                old.sent_to = min(old.sent_to, old.pos) if old.sent_to else old.pos
                self.files[key] = old
                log.info("%s goes on from %d (a file known before: fid %x)", path, old.pos, old.fid)
                self._dirty = True
                return
        t = Tracked(new_fid(), src.name, path, st.st_dev, st.st_ino, fp, fp_len, fd=fd)
        self.files[key] = t
        self.by_fid[t.fid] = t
        self._dirty = True

    def _retired_match(self, fp: str, key: tuple[int, int], size: int) -> Tracked | None:
        same = [o for o in self.retired if o.fp == fp and max(o.pos, o.acked) <= size]
        same.sort(key=lambda o: ((o.dev, o.ino) != key, -o.since))
        return same[0] if same else None

    def _find_moved(self) -> None:
        """After a restart: a kept file renamed out of its glob meanwhile is looked
        for by inode in its directory, and read to its end."""
        for o in list(self.retired):
            if o.fd is not None or not o.fp:
                continue
            d = os.path.dirname(o.path)
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) != (o.dev, o.ino) or (o.dev, o.ino) in self.files:
                    continue
                try:
                    fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    break
                if fingerprint(fd)[0] != o.fp or st.st_size < o.acked:
                    os.close(fd)
                    break
                self.retired.remove(o)
                o.path, o.fd, o.retired, o.gone, o.pos, o.sent_to = e.path, fd, False, True, o.acked, o.acked
                self.files[(o.dev, o.ino)] = o
                log.info("%s (rotated while the agent was away) is read to its end from %d", e.path, o.pos)
                break

    def _let_go(self, key: tuple[int, int], t: Tracked) -> None:
        os.close(t.fd)
        t.fd = None
        del self.files[key]
        # kept until its last lines are acknowledged? They are in the spool: a
        # replay after a crash brings them, so the position is not needed.
        self.by_fid.pop(t.fid, None)
        self._dirty = True

    def _expire(self, now: float) -> None:
        if not self.retired:
            return
        keep = [o for o in self.retired if now - o.since < RETIRED_KEEP][-MAX_RETIRED:]
        kept = set(map(id, keep))
        for o in self.retired:
            if id(o) not in kept and self.by_fid.get(o.fid) is o:
                del self.by_fid[o.fid]
        if len(keep) != len(self.retired):
            self._dirty = True
        self.retired = keep

    # --- reading ------------------------------------------------------------------------

    def _read(self, t: Tracked, src: Source, now: float, out: PollResult, budget: int) -> None:
        size = os.fstat(t.fd).st_size
        grew = size != t.last_size
        t.last_size = size
        src.files += 1
        if not t.fp:
            t.fp, t.fp_len = fingerprint(t.fd)
        budget = min(budget, READ_PER_POLL)
        while budget > 0:
            left = size - t.pos
            if left <= 0:
                break
            if src.cfg.rate_limit > 0 and src.tokens < 1:
                if not src.limited:
                    src.limited = True
                    src.held_episodes += 1
                    out.events.append(("log_rate_limited", f"{src.name}: over {src.cfg.rate_limit:g} lines/s; "
                                       "lines wait in their files and are sent later",
                                       {"source": src.name, "rate_limit": src.cfg.rate_limit, "path": t.path}))
                break
            data = os.pread(t.fd, min(left, READ_CHUNK, max(budget, 4096)), t.pos)
            if not data:
                break
            budget -= len(data)
            out.read_bytes += len(data)
            if not self._take(t, src, data, now, out, final=False):
                break
        if src.limited and src.tokens >= 1 and t.pos >= size:
            src.limited = False
        if t.pos < size and t.long_at < 0:
            self._flush_held(t, src, size, grew, now, out)
        src.backlog_bytes += max(0, size - t.pos)
        if budget <= 0 and t.pos < size:
            out.more = True

    def _flush_held(self, t: Tracked, src: Source, size: int, grew: bool, now: float, out: PollResult) -> None:
        """An open record (multiline, or an unterminated last line of a gone file)
        goes once nothing was added to it for FLUSH_AFTER."""
        if src.start is None and not t.gone:
            return
        if not t.held_since or grew:
            t.held_since = now
            return
        if now - t.held_since < FLUSH_AFTER:
            return
        data = os.pread(t.fd, min(size - t.pos, READ_CHUNK), t.pos)
        if t.gone and not data.endswith(b"\n"):
            data += b"\n"
        self._take(t, src, data, now, out, final=True)
        t.held_since = 0.0

    def _take(self, t: Tracked, src: Source, data: bytes, now: float, out: PollResult, final: bool) -> bool:
        """Records from ``data`` (read at ``t.pos``) into a chunk; False when no progress."""
        max_bytes = src.cfg.max_line_bytes
        offsets: list[int] = []
        texts: list[str] = []
        base = t.pos
        if t.long_at >= 0:
            nl = data.find(b"\n")
            if nl < 0:
                t.pos += len(data)
                return True
            offsets.append(t.long_at)
            texts.append(reader.cut(t.long_head, max_bytes, t.pos + nl - t.long_at))
            t.long_at, t.long_head = -1, b""
            base = t.pos + nl + 1
            data = data[nl + 1:]
        o, x, used = reader.split_lines(data, base, max_bytes)
        offsets += o
        texts += x
        consumed = base - t.pos + used
        if not o and (len(data) > max_bytes or len(data) >= READ_CHUNK) and data.find(b"\n") < 0:
            # no end in sight within what one read brings: skip to the line's end
            t.long_at, t.long_head = base, data[:max_bytes + 4]
            consumed = base - t.pos + len(data)
        if not offsets:
            t.pos += consumed
            return consumed > 0
        ro, rt, n_used = reader.group(offsets, texts, src.start, final)
        if src.start is not None:
            if n_used < len(offsets) and t.pos + consumed - offsets[n_used] > max_bytes:
                # an open record longer than a line may be (a start pattern that never
                # matches again): it goes now, cut, instead of being read over and over
                ro, rt, n_used = reader.group(offsets, texts, src.start, True)
            rt = [x if len(x) <= max_bytes else x[:max_bytes] + reader.CUT_MARK.format(n=len(x) - max_bytes)
                  for x in rt]
        end = t.pos + consumed if n_used == len(offsets) else offsets[n_used]
        if n_used < len(offsets):
            t.held_since = t.held_since or now
        else:
            t.held_since = 0.0
        kept = reader.keep(rt, src.include, src.exclude)
        idx = list(range(len(ro))) if kept is None else kept
        src.excluded_total += len(ro) - len(idx)
        if src.cfg.rate_limit > 0 and len(idx) > src.tokens:
            allowed = int(src.tokens)
            end = ro[idx[allowed]]  # the first record held back: read again later
            idx = idx[:allowed]
        if src.cfg.rate_limit > 0:
            src.tokens -= len(idx)
        t.pos = end
        if not idx:
            return end > base
        if len(idx) == len(rt):
            lines, offs = rt, ro
        else:
            lines = [rt[i] for i in idx]
            offs = [ro[i] for i in idx]
        src.lines_total += len(lines)
        fields = None
        if src.parser is not None:
            fields = tuple(src.parser(line) for line in lines)
        found = matches(self.rules, src.name, "\n".join(lines), line_starts(lines)) if self.rules else []
        ev = []
        for i, rule in found:
            if offs[i] >= t.counted:
                self.counters[(src.name, rule.name)] = self.counters.get((src.name, rule.name), 0) + 1
                out.counted = True
            if rule.event:
                ev.append((i, rule.name))
        t.counted = max(t.counted, end)
        ev.sort()
        out.chunks.append(LogFile(t.fid, src.name, t.path, self._wall(), end, tuple(offs), tuple(lines),
                                  fields, tuple(ev)))
        out.starts.append(min(t.sent_to, offs[0]))
        t.sent_to = end
        return True

    def _warn(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def close(self) -> None:
        for t in self.files.values():
            if t.fd is not None:
                os.close(t.fd)
                t.fd = None
        self.files.clear()
