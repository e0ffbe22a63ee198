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
#: a poll that took less than this runs the next one on the loop (no thread hand-off)
INLINE_POLL_S = 0.002
#: frames sent and not yet acknowledged whose positions are remembered
MAX_INFLIGHT = 200_000


class LogWatch:
    """``[[log]]`` sources -> LOG frames; ``[[log_rule]]`` matches -> counters (events at the root)."""

    def __init__(self, logs: tuple[LogConfig, ...], rules: tuple[LogRuleConfig, ...], default_rules: bool,
                 node: str, state_dir: Path, interval: float,
                 send: Callable[[Log], int], on_samples: Callable[[str, float, list], None],
                 on_event: Callable[[Event], None]):
        self.node = node
        self.interval = interval
        self.tailer = Tailer(logs, compile_rules(rules, default_rules), state_dir)
        self._send = send
        self._on_samples = on_samples
        self._on_event = on_event
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="logs")
        #: seq of a LOG frame -> the (fid, end) it moves forward once acknowledged
        self._inflight: dict[int, list[tuple[int, int]]] = {}
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
                if inline:
                    result = self.tailer.poll()
                else:
                    result = await loop.run_in_executor(self._thread, self.tailer.poll)
                inline = time.monotonic() - started < INLINE_POLL_S
                self._ship(result.chunks)
                for type_, message, attrs in result.events:
                    self._on_event(Event(type_, self.node, message, attrs))
                self._samples(started)
            except Exception:
                log.exception("reading the log files failed")
            await asyncio.sleep(max(0.01, self.interval - (time.monotonic() - started)))

    def _ship(self, chunks: list[LogFile]) -> None:
        """Chunks into frames of about FRAME_BYTES each, in order."""
        batch: list[LogFile] = []
        size = 0
        for c in chunks:
            n = sum(map(len, c.lines)) + 16 * len(c.lines)
            if batch and size + n > FRAME_BYTES:
                self._send_batch(batch)
                batch, size = [], 0
            batch.append(c)
            size += n
        if batch:
            self._send_batch(batch)

    def _send_batch(self, batch: list[LogFile]) -> None:
        seq = self._send(Log(tuple(batch)))
        self._inflight[seq] = [(c.fid, c.end) for c in batch]
        if len(self._inflight) > MAX_INFLIGHT:  # frames the spool dropped (reported there) are never acked
            for old in list(self._inflight)[: MAX_INFLIGHT // 10]:
                del self._inflight[old]
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
                ends = pop(s, None)
                if ends:
                    for fid, end in ends:
                        self.tailer.acked(fid, end)

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
                "log_polls": t.polls, "log_cpu_s": round(t.cpu_s, 4), "log_inflight": len(self._inflight)}

    async def close(self) -> None:
        """Keep the positions one last time (in the watch's thread, its state's owner)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        finally:
            self._thread.shutdown(wait=False)

    def _close(self) -> None:
        self.tailer.save()
        self.tailer.close()
