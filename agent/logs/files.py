"""What a tailed file is: a generation of a file (``Tracked``) known by device
and inode while open and by the fingerprint of its first line across restarts,
renames and copies, with how far it was read, acknowledged and counted. The
tailer (``tailer.py``) decides when a file moved, was truncated or replaced;
this is the record it keeps and saves.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

#: the fingerprint covers the first line, at most this many bytes
FP_BYTES = 1024


def new_fid() -> int:
    return int.from_bytes(os.urandom(8), "little") >> 2


def fingerprint(fd: int) -> tuple[str, int]:
    """(hash, length) of the first line (at most FP_BYTES); ('', 0) while there is none."""
    head = os.pread(fd, FP_BYTES, 0)
    nl = head.find(b"\n")
    if nl < 0 and len(head) < FP_BYTES:
        return "", 0
    n = nl + 1 if nl >= 0 else FP_BYTES
    return digest(head[:n]), n


def digest(first_line: bytes) -> str:
    """The fingerprint of a file's first line (``fingerprint``'s hash)."""
    return hashlib.blake2b(first_line, digest_size=12).hexdigest()


@dataclass(slots=True)
class Tracked:
    """One generation of one file, and how far it has been read and acknowledged."""

    fid: int
    source: str
    path: str
    dev: int
    ino: int
    fp: str = ""
    fp_len: int = 0
    #: next byte to read: what lies before was sent (or left out by include/exclude)
    pos: int = 0
    #: the root has stored everything before this
    acked: int = 0
    #: the rules have counted the lines before this
    counted: int = 0
    #: where the next chunk sent begins (the end of the last one)
    sent_to: int = 0
    #: acknowledged chunks beyond ``acked`` (start -> end), waiting for the ones before
    ahead: dict = field(default_factory=dict)
    fd: int | None = None
    #: its path leads elsewhere now: read to the end, then let go
    gone: bool = False
    #: truncated, or not found yet after a restart: waits for a copy to go on with it
    retired: bool = False
    #: when it was retired (or loaded from the positions file): kept RETIRED_KEEP from then
    since: float = 0.0
    #: a line longer than max_line_bytes began here and is being skipped to its end
    long_at: int = -1
    long_head: bytes = b""
    #: an open record (multiline, or the last line of a gone file) waits since then
    held_since: float = 0.0
    last_size: int = -1
    #: gone, read to its end, and not grown since then (at this size)
    gone_idle: float = 0.0
    gone_size: int = -1
    #: (size, mtime) at the last look: the first line is checked again when it moves
    last_stat: tuple[int, int] = (-1, -1)

    def state(self) -> dict[str, Any]:
        return {"fid": self.fid, "source": self.source, "path": self.path, "dev": self.dev, "ino": self.ino,
                "fp": self.fp, "fp_len": self.fp_len, "acked": self.acked, "counted": max(self.counted, self.acked),
                "retired": self.retired}
