"""Children's frames into BATCH frames: flush by count, size or delay."""

from __future__ import annotations

import logging
import time
from typing import Callable

from clumon.proto import codec
from clumon.proto.runtime import QuietLog

log = logging.getLogger("clumon.aggregator.batcher")

#: bytes a BATCH adds around its frames (the envelope; the sender's name apart),
#: and per frame (a msgpack bin header): a generous bound
ENVELOPE_BYTES = 64
PER_FRAME_BYTES = 5


class Batcher:
    """Collects encoded frames and hands a BATCH to ``send`` when one is due.

    ``max_frames=1`` is pure forwarding; a large count with a delay is pure
    time-driven push (DESIGN.md's hybrid). A BATCH is flushed once it holds
    ``max_bytes`` and never exceeds ``limit`` (the parent's ``max_frame_bytes``,
    which refuses anything larger): a frame that would take it past the limit
    goes into the next one.
    """

    def __init__(
        self,
        name: str,
        incarnation: int,
        send: Callable[[bytes], bool],
        max_frames: int,
        max_delay: float,
        max_bytes: int = codec.MAX_FRAME_BYTES // 2,
        limit: int = codec.MAX_FRAME_BYTES,
    ):
        self.name = name
        self.incarnation = incarnation
        self._send = send
        self.max_frames = max_frames
        self.max_delay = max_delay
        self.max_bytes = max_bytes
        self.limit = limit
        self._envelope = ENVELOPE_BYTES + len(name.encode())
        self._quiet = QuietLog(log)
        self._frames: list[bytes] = []
        self._bytes = 0
        self._first = 0.0
        self.batches_out = 0
        self.frames_out = 0
        #: frames not delivered upstream (their senders replay them from spool)
        self.frames_unsent = 0

    def add(self, data: bytes) -> None:
        size = len(data) + PER_FRAME_BYTES
        if self._envelope + size > self.limit:
            # no BATCH can carry it: never acknowledged, its sender's spool keeps it
            self.frames_unsent += 1
            self._quiet.warn("too-big", "a frame of %d bytes cannot fit a BATCH of at most %d bytes: not sent",
                             len(data), self.limit)
            return
        if self._frames and self._envelope + self._bytes + size > self.limit:
            self.flush()
        if not self._frames:
            self._first = time.monotonic()
        self._frames.append(data)
        self._bytes += size
        if len(self._frames) >= self.max_frames or self._bytes >= self.max_bytes:
            self.flush()

    def due(self) -> bool:
        return bool(self._frames) and time.monotonic() - self._first >= self.max_delay

    def flush(self) -> None:
        if not self._frames:
            return
        frames, self._frames, self._bytes = self._frames, [], 0
        data = codec.encode_batch(self.name, self.incarnation, time.time(), frames)
        if self._send(data):
            self.batches_out += 1
            self.frames_out += len(frames)
        else:
            self.frames_unsent += len(frames)

    def __len__(self) -> int:
        return len(self._frames)
