"""Log lines at the root: stored once, compressed, found by window and node first.

Each commit writes, per (node, source, hour window), one row of ``log_chunks``
holding its lines as zstd-compressed msgpack columns. A line is named by
``(node, fid, offset)``; ``log_files`` keeps, per file generation, the ranges of
offsets already stored, so a line sent twice (a replay of the agent's spool, a
re-read after it was killed) is stored once. The ranges are cached in memory by
the one writer thread and updated only after a commit.

A search reads the index (window start, node), then decompresses only those
chunks, newest first, and stops at its limit.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any, Iterable

import msgpack
import sqlalchemy as sa
import zstandard

from clumon.proto.frames import LogFile

from . import schema as S
from .rows import EventRow

#: a chunk holds one commit's lines of one (node, source) in one window of this many seconds
WINDOW = 3600.0
ZSTD_LEVEL = 3
#: the longest line an EVENT log_match carries whole in its message
EVENT_LINE_MAX = 4096
LOG_MATCH = "log_match"


@dataclass(frozen=True, slots=True)
class LogRow:
    """A LOG frame waiting for its commit (ACKed like a frame row, by its key)."""

    node: str
    incarnation: int
    seq: int
    ts: float
    files: tuple[LogFile, ...]


#: the layout of a chunk's content; ``decode_chunk`` refuses others
CHUNK_FORMAT = 1
_BIG = sys.byteorder == "big"


def _packed(code: str, items) -> bytes:
    a = array(code, items)
    if _BIG:
        a.byteswap()
    return a.tobytes()


def _unpacked(code: str, data: bytes) -> list:
    a = array(code)
    a.frombytes(data)
    if _BIG:
        a.byteswap()
    return a.tolist()


def encode_chunk(ts: list[float], fid: list[int], off: list[int], paths: list[str], lines: list[str],
                 fields: list) -> bytes:
    """A chunk's lines as msgpack (before zstd): numbers as packed little-endian
    columns (one object each when read back, not one per line), the lines as ONE
    text joined by newlines with their lengths apart, so a search that finds
    nothing in a chunk makes no object per line."""
    uniq = list(dict.fromkeys(paths))
    where = {p: i for i, p in enumerate(uniq)}
    return msgpack.packb([CHUNK_FORMAT, len(lines), _packed("d", ts), _packed("q", fid), _packed("q", off), uniq,
                          _packed("I", [where[p] for p in paths]), _packed("I", map(len, lines)), "\n".join(lines),
                          fields if any(x is not None for x in fields) else None], use_bin_type=True)


@dataclass(slots=True)
class Chunk:
    """A chunk read back: ``text`` first; the columns when ``columns()`` is called."""

    n: int
    raw: list
    text: str

    def columns(self) -> tuple[list[float], list[int], list[int], list[str], list[str], list | None]:
        """(ts, fid, offset, path, line, fields) per line."""
        _, n, ts_b, fid_b, off_b, paths, pidx_b, lens_b, text, fields = self.raw
        lines, at = [], 0
        for k in _unpacked("I", lens_b):
            lines.append(text[at:at + k])
            at += k + 1
        return (_unpacked("d", ts_b), _unpacked("q", fid_b), _unpacked("q", off_b),
                [paths[i] for i in _unpacked("I", pidx_b)], lines, fields)


def decode_chunk(data: bytes, dctx: "zstandard.ZstdDecompressor | None" = None) -> Chunk:
    raw = msgpack.unpackb((dctx or zstandard.ZstdDecompressor()).decompress(data), raw=False)
    if raw[0] != CHUNK_FORMAT:
        raise ValueError(f"log chunk layout {raw[0]!r} unknown (this build reads {CHUNK_FORMAT})")
    return Chunk(raw[1], raw, raw[8])


def _covered(ranges: list[list[int]], offset: int) -> bool:
    for lo, hi in ranges:
        if lo <= offset < hi:
            return True
    return False


def _merge(ranges: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted([*ranges, [lo, hi]]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


class LogStore:
    """The log tables: ``write`` (in the store's transaction), ``search``, ``expire``."""

    def __init__(self, insert):
        self._insert = insert
        self._ranges: dict[tuple[str, int], list[list[int]]] = {}
        self._lock = threading.Lock()
        self._cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.lines_stored = 0
        self.lines_duplicate = 0
        #: windows before this were merged by ``compact`` (it still looks a day further back)
        self._compacted_to = 0.0

    # --- writing (the writer thread) ------------------------------------------------

    def _known(self, conn: sa.Connection, keys: set[tuple[str, int]]) -> None:
        missing = [k for k in keys if k not in self._ranges]
        if not missing:
            return
        t = S.log_files
        by_node: dict[str, list[int]] = {}
        for node, fid in missing:
            by_node.setdefault(node, []).append(fid)
        for node, fids in by_node.items():
            for i in range(0, len(fids), 500):
                for r in conn.execute(sa.select(t.c.fid, t.c.ranges).where(t.c.node == node,
                                                                             t.c.fid.in_(fids[i:i + 500]))):
                    self._ranges[(node, r.fid)] = [list(x) for x in r.ranges]
        for k in missing:
            self._ranges.setdefault(k, [])

    def write(self, conn: sa.Connection, rows: list[LogRow]) -> tuple[list[EventRow], dict]:
        """Insert the lines not stored yet; returns the ``log_match`` events of the
        new lines, and the ranges to cache once the transaction commits."""
        keys = {(r.node, f.fid) for r in rows for f in r.files}
        self._known(conn, keys)
        work: dict[tuple[str, int], list[list[int]]] = {}
        files_rows: dict[tuple[str, int], dict] = {}
        chunks: dict[tuple[str, str, float], list] = {}
        events: list[EventRow] = []
        dup = 0
        for r in rows:
            for f in r.files:
                key = (r.node, f.fid)
                ranges = work.get(key)
                if ranges is None:
                    ranges = self._ranges[key]
                if ranges and f.offsets and f.offsets[0] < ranges[-1][1]:
                    keep = [i for i, off in enumerate(f.offsets) if not _covered(ranges, off)]
                else:  # the usual case: every line is past what is stored
                    keep = range(len(f.offsets))
                dup += len(f.offsets) - len(keep)
                lo = f.offsets[0] if f.offsets else f.end - 1
                work[key] = _merge(ranges, lo, f.end)
                files_rows[key] = {"node": r.node, "fid": f.fid, "source": f.source, "path": f.path,
                                   "ranges": work[key], "last_ts": f.ts}
                if not keep:
                    continue
                window = (f.ts // WINDOW) * WINDOW
                cols = chunks.setdefault((r.node, f.source, window), [[], [], [], [], [], [], [], f.ts, f.ts])
                cols[0].extend([f.ts] * len(keep))
                cols[1].extend([f.fid] * len(keep))
                cols[2].extend(f.offsets[i] for i in keep)
                cols[3].extend([f.path] * len(keep))
                cols[4].extend(f.lines[i] for i in keep)
                cols[5].extend(None if f.fields is None else f.fields[i] for i in keep)
                cols[7] = min(cols[7], f.ts)
                cols[8] = max(cols[8], f.ts)
                if f.matches:
                    kept = set(keep)
                    for i, rule in f.matches:
                        if i in kept:
                            events.append(self._event(r.node, f, i, rule))
        if chunks:
            conn.execute(S.log_chunks.insert(), [self._chunk(k, cols) for k, cols in chunks.items()])
        if files_rows:
            t = S.log_files
            stmt = self._insert(t)
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.node, t.c.fid],
                                              set_={"ranges": stmt.excluded.ranges, "path": stmt.excluded.path,
                                                    "last_ts": stmt.excluded.last_ts})
            conn.execute(stmt, list(files_rows.values()))
        stored = sum(len(c[4]) for c in chunks.values())
        return events, {"ranges": work, "stored": stored, "dup": dup}

    def committed(self, done: dict) -> None:
        """The transaction committed: the ranges it wrote are the stored ones now."""
        self._ranges.update(done["ranges"])
        self.lines_stored += done["stored"]
        self.lines_duplicate += done["dup"]
        if len(self._ranges) > 200_000:  # reloaded from log_files when needed
            self._ranges.clear()

    def _chunk(self, key: tuple[str, str, float], cols: list) -> dict:
        node, source, window = key
        return {"node": node, "source": source, "start": window, "first_ts": cols[7], "last_ts": cols[8],
                "lines": len(cols[4]), "data": self._cctx.compress(encode_chunk(*cols[:6]))}

    @staticmethod
    def _event(node: str, f: LogFile, i: int, rule: str) -> EventRow:
        line = f.lines[i]
        attrs: dict[str, Any] = {"source": f.source, "rule": rule, "path": f.path, "fid": f.fid,
                                 "offset": f.offsets[i], "line": line[:EVENT_LINE_MAX]}
        if f.fields is not None and f.fields[i]:
            attrs["fields"] = f.fields[i]
        # keyed by the line and the rule: a line stored once is an event once
        return EventRow(f.ts, node, LOG_MATCH, f"{f.source} [{rule}] {line[:500]}", attrs,
                        f"{node}#log#{rule}", f.fid, f.offsets[i])

    # --- reading --------------------------------------------------------------------

    def search(self, conn: sa.Connection, nodes: Iterable[str] | None, source: str | None, since: float,
               until: float, grep: str | None, limit: int, after: int = 0, node_glob: str | None = None
               ) -> dict[str, Any]:
        """Lines in [since, until], newest ``limit`` of them (or, with ``after``, the
        oldest chunks after that chunk id: ``follow``), oldest first."""
        t = S.log_chunks
        q = sa.select(t.c.id, t.c.node, t.c.source, t.c.data).where(t.c.start >= since - WINDOW, t.c.start <= until,
                                                                     t.c.last_ts >= since, t.c.first_ts <= until)
        if nodes is not None:
            nodes = list(nodes)
            if not nodes:
                return {"lines": [], "cursor": after, "chunks_read": 0, "truncated": False}
            q = q.where(t.c.node.in_(nodes))
        if source:
            q = q.where(t.c.source == source)
        if after:
            # chunks are appended in id order; compaction rewrites only windows
            # closed two windows back (new ids, old lines), which a follow skips
            q = q.where(t.c.id > after, t.c.start >= time.time() - 2 * WINDOW).order_by(t.c.id)
        else:
            q = q.order_by(t.c.id.desc())
        rx = re.compile(grep) if grep else None
        # the whole chunk first (lines joined by newlines, ^ and $ at each): a chunk
        # without a match is left at once; \A and \Z only mean something line by line
        whole = re.compile(grep, re.M) if grep and "\\A" not in grep and "\\Z" not in grep else None
        glob_rx = re.compile(fnmatch.translate(node_glob)) if node_glob else None
        dctx = zstandard.ZstdDecompressor()
        out: list[tuple] = []
        cursor = after
        chunks_read = 0
        truncated = False
        result = conn.execution_options(stream_results=True).execute(q)
        for cid, node, src, data in result:
            if glob_rx is not None and not glob_rx.match(node):
                continue
            chunks_read += 1
            cursor = max(cursor, cid)
            chunk = decode_chunk(data, dctx)
            if whole is not None and whole.search(chunk.text) is None:
                continue
            ts, fid, off, paths, lines, fields = chunk.columns()
            hits = range(len(lines)) if rx is None else [i for i, line in enumerate(lines) if rx.search(line)]
            got = [(ts[i], node, src, paths[i], fid[i], off[i], lines[i], None if fields is None else fields[i])
                   for i in hits if since <= ts[i] <= until]
            out.extend(got)
            if len(out) >= limit:
                truncated = True
                break
        result.close()
        out.sort(key=lambda x: (x[0], x[1], x[4], x[5]))
        if len(out) > limit:
            out = out[:limit] if after else out[-limit:]
        return {"lines": [{"ts": a, "node": n, "source": s, "path": p, "fid": f, "offset": o, "line": line,
                           **({"fields": fl} if fl else {})} for a, n, s, p, f, o, line, fl in out],
                "cursor": cursor, "chunks_read": chunks_read, "truncated": truncated}

    def compact(self, conn: sa.Connection, now: float, max_groups: int = 200) -> int:
        """Merge the chunks of each closed (node, source, window) into one: a
        commit writes one small chunk per node, a search wants few large ones.
        Returns the chunks merged away. Windows are closed ``WINDOW`` after their
        end (late lines make a new small chunk, merged by a later pass)."""
        t = S.log_chunks
        closed = now - 2 * WINDOW  # (a follow reads only windows after this: see search)
        lookback = self._compacted_to - 86400.0 if self._compacted_to else 0.0
        groups = conn.execute(
            sa.select(t.c.node, t.c.source, t.c.start).where(t.c.start < closed, t.c.start >= lookback)
            .group_by(t.c.node, t.c.source, t.c.start).having(sa.func.count() > 1).limit(max_groups)).all()
        dctx = zstandard.ZstdDecompressor()
        merged = 0
        for node, source, start in groups:
            rows = conn.execute(sa.select(t.c.id, t.c.data).where(t.c.node == node, t.c.source == source,
                                                                  t.c.start == start)).all()
            recs = []
            for _, data in rows:
                ts, fid, off, paths, lines, fields = decode_chunk(data, dctx).columns()
                recs += [(ts[i], fid[i], off[i], paths[i], lines[i], None if fields is None else fields[i])
                         for i in range(len(lines))]
            recs.sort(key=lambda r: (r[0], r[1], r[2]))
            cols = [[r[k] for r in recs] for k in range(6)] + [[], recs[0][0], recs[-1][0]]
            conn.execute(t.insert(), [self._chunk((node, source, start), cols)])
            conn.execute(t.delete().where(t.c.id.in_([r.id for r in rows])))
            merged += len(rows) - 1
        if len(groups) < max_groups:
            self._compacted_to = closed
        return merged

    def expire(self, conn: sa.Connection, now: float, keep: float) -> dict[str, int]:
        t, f = S.log_chunks, S.log_files
        gone = conn.execute(t.delete().where(t.c.start < now - keep - WINDOW)).rowcount
        files = conn.execute(f.delete().where(f.c.last_ts < now - keep - WINDOW)).rowcount
        if files:
            with self._lock:
                self._ranges.clear()
        return {"log_chunks": gone, "log_files": files}
