"""From a file's bytes to records: lines cut at ``max_line_bytes``, decoded with
errors replaced, grouped into multiline records, filtered.

Pure functions over bytes already read; ``tailer.py`` does the reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate

#: what replaces the rest of a line longer than ``max_line_bytes``
CUT_MARK = " …[cut {n} bytes]"


@dataclass(slots=True)
class Records:
    """Records of one read: where each began, its text; ``consumed`` bytes of the
    input are done with (the rest is an unfinished line or record, read again)."""

    offsets: list[int]
    texts: list[str]
    consumed: int
    excluded: int = 0


def cut(line: bytes, max_bytes: int, full_len: int | None = None) -> str:
    """A line's text, cut at ``max_bytes`` with a mark naming what was left out."""
    n = len(line) if full_len is None else full_len
    if n <= max_bytes:
        return line.decode("utf-8", "replace")
    # a cut inside a UTF-8 sequence becomes one replacement character, no more
    return line[:max_bytes].decode("utf-8", "replace") + CUT_MARK.format(n=n - max_bytes)


def split_lines(data: bytes, base: int, max_bytes: int) -> tuple[list[int], list[str], int]:
    """Complete lines of ``data`` (which begins at file offset ``base``):
    their offsets, texts and the bytes they take (through the last newline).

    The block is decoded and split in one go (in C): a newline is never part of
    a UTF-8 sequence, so this gives what decoding line by line would."""
    end = data.rfind(b"\n")
    if end < 0:
        return [], [], 0
    block = data[:end]
    raw = block.split(b"\n")
    lens = list(map(len, raw))
    offsets = list(accumulate((n + 1 for n in lens[:-1]), initial=base))
    if max(lens) <= max_bytes:
        texts = block.decode("utf-8", "replace").split("\n")
    else:
        texts = [cut(r, max_bytes) for r in raw]
    if b"\r" in block:
        texts = [t[:-1] if t.endswith("\r") else t for t in texts]
    return offsets, texts, end + 1


def group(offsets: list[int], texts: list[str], start: re.Pattern | None, final: bool) -> tuple[list[int], list[str], int]:
    """Multiline records: a line matching ``start`` begins one, others join it.

    Returns the records complete so far and how many input lines they use; the
    last record stays open (it may go on) unless ``final``. Lines before the first
    start line are records of their own."""
    if start is None or not texts:
        return offsets, texts, len(texts)
    out_o: list[int] = []
    out_t: list[str] = []
    cur: list[str] = []
    cur_at = 0
    begun = 0
    for i, t in enumerate(texts):
        if start.search(t) or not cur:
            if cur:
                out_o.append(cur_at)
                out_t.append("\n".join(cur))
            cur, cur_at, begun = [t], offsets[i], i
        else:
            cur.append(t)
    if final and cur:
        out_o.append(cur_at)
        out_t.append("\n".join(cur))
        return out_o, out_t, len(texts)
    return out_o, out_t, begun


def keep(texts: list[str], include: re.Pattern | None, exclude: re.Pattern | None) -> list[int] | None:
    """Indices of the records that pass include/exclude (None: all of them)."""
    if include is None and exclude is None:
        return None
    return [i for i, t in enumerate(texts)
            if (include is None or include.search(t)) and (exclude is None or not exclude.search(t))]
