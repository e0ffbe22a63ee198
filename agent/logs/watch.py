"""The log watch in the agent: polls the tailer in a thread of its own and sends
what it read up the tree as LOG frames (numbered, spooled and acknowledged like
DATA); acknowledgements move the kept positions forward.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from clumon.agent.collectors.base import Sample, series
from clumon.proto.frames import Event, Log, LogFile

from .config import LogConfig, LogRuleConfig
from .rules import compile_rules
from .tailer import Tailer

log = logging.getLogger("clumon.agent.logs")

SOURCE = "logs"
#: a LOG frame carries at most about this many bytes of lines (several frames a poll beyond)
FRAME_BYTES = 1024 * 1024
#: series are sent at least this often when nothing changed (change suppression does the rest)
SAMPLES_EVERY = 10.0
#: a poll that took less than this runs the next one on the loop (no thread hand-off),
#: reading at most INLINE_READ_BYTES there; one that left more to read, in the thread
INLINE_POLL_S = 0.002
INLINE_READ_BYTES = 256 * 1024
#: frames sent and not yet acknowledged whose positions are remembered
MAX_INFLIGHT = 200_000
#: above this many bytes of LOG frames not yet acknowledged, reading waits: the lines
#: stay in their files (the spool is kept for what exists nowhere else)
MAX_INFLIGHT_BYTES = 32 * 1024 * 1024
#: seconds between looks for LOG frames the spool dropped (read again from their files)
LOST_CHECK_EVERY = 10.0


class LogWatch:
    """``[[log]]`` sources -> LOG frames; ``[[log_rule]]`` matches -> counters (events at the root)."""

    def __init__(self, logs: tuple[LogConfig, ...], rules: tuple[LogRuleConfig, ...], default_rules: bool,
                 node: str, state_dir: Path, interval: float,
                 send: Callable[[Log], int], on_samples: Callable[[str, float, list], None],
                 on_event: Callable[[Event], None], holds: Callable[[int], bool] | None = None,
                 max_inflight_bytes: int = MAX_INFLIGHT_BYTES):
        """``holds(seq)``: whether the spool still keeps a frame of this incarnation."""
        self.node = node
        self.interval = interval
        self.tailer = Tailer(logs, compile_rules(rules, default_rules), state_dir, burst_s=interval)
        self._send = send
        self._on_samples = on_samples
        self._on_event = on_event
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="logs")
        #: seq of a LOG frame -> its size and the (fid, first offset, end) of its files
        self._inflight: dict[int, tuple[int, list[tuple[int, int, int]]]] = {}
        self._inflight_bytes = 0
        self.max_inflight_bytes = max_inflight_bytes
        self._holds = holds
        self._lost_checked = time.monotonic()
        #: LOG frames the spool dropped unacknowledged whose lines were read again
        self.frames_reread = 0
        self.paused_polls = 0
        self._samples_at = 0.0
        self._sent_counters: dict = {}
        self.frames = 0
        self.lines = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inline = False
        while True:
            started = time.monotonic()
            try:
                # A poll that read little runs on the loop, as the agent's own reads
                # do (a thread hand-off costs more than the poll); one after a poll
                # that took long (a backlog, a slow disk) runs in the watch's thread.
                if started - self._lost_checked >= LOST_CHECK_EVERY:
                    self._lost_checked = started
                    self.reread_lost()
                if self._inflight_bytes > self.max_inflight_bytes:
                    self.paused_polls += 1  # the root is behind or away: lines wait in their files
                    await asyncio.sleep(self.interval)
                    continue
                if inline:
                    result = self.tailer.poll(INLINE_READ_BYTES)
                else:
                    result = await loop.run_in_executor(self._thread, self.tailer.poll)
                inline = time.monotonic() - started < INLINE_POLL_S and not result.more
                self._ship(result.chunks, result.starts)
                for type_, message, attrs in result.events:
                    self._on_event(Event(type_, self.node, message, attrs))
                self._samples(started)
            except Exception:
                log.exception("reading the log files failed")
            await asyncio.sleep(max(0.01, self.interval - (time.monotonic() - started)))

    def _ship(self, chunks: list[LogFile], starts: list[int]) -> None:
        """Chunks into frames of about FRAME_BYTES each, in order."""
        batch: list[LogFile] = []
        begun: list[int] = []
        size = 0
        for c, start in zip(chunks, starts):
            n = sum(map(len, c.lines)) + 16 * len(c.lines)
            if batch and size + n > FRAME_BYTES:
                self._send_batch(batch, begun, size)
                batch, begun, size = [], [], 0
            batch.append(c)
            begun.append(start)
            size += n
        if batch:
            self._send_batch(batch, begun, size)

    def _send_batch(self, batch: list[LogFile], starts: list[int], size: int) -> None:
        seq = self._send(Log(tuple(batch)))
        self._inflight[seq] = (size, [(c.fid, start, c.end) for c, start in zip(batch, starts)])
        self._inflight_bytes += size
        if len(self._inflight) > MAX_INFLIGHT:  # a spool without ``holds``: forget the oldest
            for old in list(self._inflight)[: MAX_INFLIGHT // 10]:
                self._inflight_bytes -= self._inflight.pop(old)[0]
        self.frames += 1
        self.lines += sum(len(c.lines) for c in batch)

    def acked(self, ranges) -> None:
        """The root stored these seqs of this incarnation: their positions may be kept."""
        pop = self._inflight.pop
        for lo, hi in ranges:
            if hi - lo > len(self._inflight):
                seqs = [s for s in self._inflight if lo <= s <= hi]
            else:
                seqs = range(lo, hi + 1)
            for s in seqs:
                got = pop(s, None)
                if got:
                    self._inflight_bytes -= got[0]
                    for fid, start, end in got[1]:
                        self.tailer.acked(fid, start, end)

    def reread_lost(self) -> int:
        """LOG frames the spool dropped before their ACK (an overflow, its age
        bound; reported by the uplink as spool_overflow): their lines are read
        again from their files, which still hold them (the root stores each once).
        Returns how many frames were so recovered."""
        if self._holds is None:
            return 0
        lost = [s for s in self._inflight if not self._holds(s)]
        for s in lost:
            size, files = self._inflight.pop(s)
            self._inflight_bytes -= size
            for fid, start, _ in files:
                self.tailer.rewind(fid, start)
        if lost:
            self.frames_reread += len(lost)
            log.warning("%d LOG frames were dropped by the spool unacknowledged: reading their lines again", len(lost))
        return len(lost)

    def _samples(self, now: float) -> None:
        counters = dict(self.tailer.counters)
        if counters == self._sent_counters and now - self._samples_at < SAMPLES_EVERY:
            return
        self._samples_at = now
        self._sent_counters = counters
        out = [Sample(series("clumon_log_matches_total", source=s, rule=r), float(n)) for (s, r), n in counters.items()]
        for src in self.tailer.sources:
            out.append(Sample(series("clumon_log_lines_total", source=src.name), float(src.lines_total)))
            out.append(Sample(series("clumon_log_backlog_bytes", source=src.name), float(src.backlog_bytes)))
        self._on_samples(SOURCE, max(self.interval, SAMPLES_EVERY), out)

    def stats(self) -> dict:
        t = self.tailer
        return {"log_files": len(t.files), "log_frames": self.frames, "log_lines": self.lines,
                "log_polls": t.polls, "log_cpu_s": round(t.cpu_s, 4), "log_inflight": len(self._inflight),
                "log_inflight_bytes": self._inflight_bytes, "log_frames_reread": self.frames_reread,
                "log_paused_polls": self.paused_polls}

    async def close(self) -> None:
        """Keep the positions one last time (in the watch's thread, its state's owner)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        finally:
            self._thread.shutdown(wait=False)

    def _close(self) -> None:
        self.tailer.save()
        self.tailer.close()
