"""The collector contract: what a source of samples looks like.

A collector reads one source (a /proc file or a few), turns it into ``Sample``s and
never raises out of ``collect()``: a missing file or a vanished process means a
value of ``None`` or an absent sample. Each collector takes its procfs root as a
constructor argument so tests point it at a fake tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Callable, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True, slots=True, init=False)
class Sample:
    """One value of one series.

    ``name`` is the full Prometheus-style series name including labels, e.g.
    ``node_disk_used_ratio{mount="/"}``. ``value`` is ``None`` when missing;
    counters (``_total``) are raw cumulative values, never rates.
    """

    name: str
    value: float | None

    def __init__(self, name: str, value: float | None) -> None:
        # The generated frozen __init__ goes through object.__setattr__ per field;
        # setting the slots directly makes a Sample ~30 % cheaper, and the agent
        # makes ~150 of them every second.
        _set_name(self, name)
        _set_value(self, value)


_set_name = Sample.__dict__["name"].__set__
_set_value = Sample.__dict__["value"].__set__


class Layout:
    """A collector's series names as one tuple object, the same read after read.

    Collectors that offer ``collect_columns()`` hand the sampler ``(names,
    values)`` instead of a ``Sample`` per value; while the names stay the same the
    sampler recognises them by identity and does no work per name. Call with the
    names of this read; returns the kept tuple when they are equal (a C-level
    compare of the same string objects), else keeps and returns the new one.
    """

    __slots__ = ("names",)

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()

    def __call__(self, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        t = tuple(names)
        if t != self.names:
            self.names = t
        return self.names


def as_samples(columns: tuple[tuple[str, ...], list[float | None]]) -> list[Sample]:
    """``collect()`` for a collector that reads by ``collect_columns()``."""
    names, values = columns
    return [Sample(n, v) for n, v in zip(names, values)]


class ColumnCollector:
    """Base of the built-in collectors that read by ``collect_columns()`` (names and
    values side by side, see ``Collector``): ``collect()`` is that read as ``Sample``s."""

    def collect(self) -> list[Sample]:
        return as_samples(self.collect_columns())  # type: ignore[attr-defined]


@runtime_checkable
class Collector(Protocol):
    """A source of samples, read every ``default_interval`` seconds.

    ``name`` is the source name used in configuration (``cpu``, ``memory``, ...).
    A collector may set ``on_loop = True`` when it reads nothing but /proc files
    the kernel makes from memory (never a device, a network mount or a sensor
    bus, never a sweep over processes): the agent then reads it on its event
    loop instead of handing it to the collecting thread and back.
    ``collect()`` must be cheap and must not raise for missing data.

    A collector may also offer ``collect_columns() -> (names, values)``: the same
    read as two columns, ``names`` a tuple that is the same object while the
    series stay the same (``Layout``) and ``values`` a new list each read. The
    agent then reads built-in collectors that way, with no ``Sample`` per value
    (the 1 s sources do); entry-point plugins are always read by ``collect()``,
    whose samples the agent checks.
    """

    name: str
    default_interval: float

    def collect(self) -> list[Sample]:
        """Read the source now and return its samples."""
        ...


def series(metric: str, **labels: str) -> str:
    """Format a series name with labels in the given order: ``m{a="x",b="y"}``.

    Label values are escaped as in the Prometheus text format so a mount point
    with a quote or backslash cannot break the name.
    """
    if not labels:
        return metric
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{metric}{{{body}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def read_bytes(path: str) -> bytes | None:
    """The whole content of a small file, or ``None`` if it cannot be read.

    os.open/os.read skip the buffered text layer of ``open()``: on /proc files
    this is several times cheaper, and collectors parse bytes directly.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


class ProcFile:
    """A /proc file kept open and read again from offset 0.

    The kernel generates a /proc file afresh for each read from its start, so a
    held descriptor and ``pread`` spare the open, the path walk and the close of
    every read: the agent's dozen 1 s files cost ~40 % less to read. A file that
    cannot be opened or read is tried again at the next read. (A file replaced
    on disk would be read from its old inode: not a case /proc has.)

    Each read asks for about twice what the file held last time (1 to 64 KiB), not
    64 KiB: ``os.pread`` allocates a bytes object of the asked size and shrinks
    it, and those 64 KiB allocations shrunk in place fragmented the heap, so the
    agent's RSS crept up ~0.1 MiB every 30 s (flat with sized reads).
    """

    __slots__ = ("path", "_fd", "_size")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 65536

    def read(self) -> bytes | None:
        """The whole content, or ``None`` if the file cannot be read."""
        fd = self._fd
        if fd is None:
            try:
                fd = self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            size = self._size
            chunk = os.pread(fd, size, 0)
            offset = len(chunk)
            if offset < size and offset <= SURELY_WHOLE:
                # The whole file: see SURELY_WHOLE. No second read to find EOF.
                if size > 4 * offset + 1024 or size < 2 * offset:
                    self._size = _buffer_for(offset)
                return chunk
            # A seq_file hands out one buffer (a page, at first) per read: read on to EOF.
            chunks = [chunk]
            while chunk:
                chunk = os.pread(fd, size, offset)
                chunks.append(chunk)
                offset += len(chunk)
        except OSError:
            self.close()
            return None
        self._size = _buffer_for(offset)
        return b"".join(chunks) if len(chunks) > 2 else chunks[0]

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self) -> None:
        self.close()


#: A first read that came back shorter than asked and no longer than this held the
#: whole file. A seq_file read stops short only at EOF or when its buffer (at least
#: a page, 4 KiB) cannot take the next record; /proc records (a line, a device, one
#: single_open record sized for the whole file) are far shorter than the 2 KiB left.
#: Skipping the read that would only find EOF saves a syscall and, for /proc/stat,
#: the kernel making its text again.
SURELY_WHOLE = 2048


def _buffer_for(length: int) -> int:
    """A read size for a file that held ``length`` bytes: a power of two of at least
    twice that, from 1 KiB to 64 KiB."""
    size = 1024
    while size < 2 * length and size < 65536:
        size *= 2
    return size


class Shape:
    """Where a /proc file's values sit among its tokens (``raw.split()``), learnt once.

    The layout of the files the 1 s sources read (which keys, headers and devices,
    in which order) is fixed on a running kernel; only the numbers change. A
    collector learns the layout from one read, parsing it line by line, and later
    reads take three C-level steps: compare the tokens that name things (keys,
    column headers, device names) with the learnt ones in one tuple compare, pick
    the value tokens with one ``itemgetter``, and convert them with one ``map``.
    There is no Python work per value, which on a cold cache after the agent's
    second of sleep was most of what parsing cost. A read whose layout differs (a
    device came, a kernel added a field) returns ``None`` and the collector learns
    again.
    """

    __slots__ = ("length", "_keys", "_expect", "_values")

    def __init__(self, length: int, keys: Sequence[int], expect: Sequence[bytes], values: Sequence[int]) -> None:
        #: how many tokens the file had
        self.length = length
        self._keys = tuple_getter(keys)
        self._expect = tuple(expect)
        self._values = tuple_getter(values)

    def ints(self, tokens: list[bytes]) -> list[int] | None:
        """The value tokens as ints; ``None`` when the layout changed or one is not a number."""
        return self._pick(tokens, int)

    def floats(self, tokens: list[bytes]) -> list[float] | None:
        """The value tokens as floats; ``None`` as for ``ints``."""
        return self._pick(tokens, float)

    def _pick(self, tokens: list[bytes], convert: Callable[[bytes], float]) -> list | None:
        if len(tokens) != self.length or self._keys(tokens) != self._expect:
            return None
        try:
            return list(map(convert, self._values(tokens)))
        except ValueError:
            return None


def tuple_getter(positions: Sequence[int]) -> Callable[[Sequence[bytes]], tuple[bytes, ...]]:
    """``itemgetter`` that always returns a tuple (for one position it returns the item)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        only = positions[0]
        return lambda tokens: (tokens[only],)
    return lambda tokens: ()


def learn_keyed(raw: bytes, wanted: Sequence[bytes], unit: bytes = b"") -> tuple[Shape | None, tuple[bytes, ...], list[int]]:
    """Learn a file of ``key value [unit]`` lines (/proc/meminfo, /proc/vmstat).

    Returns the shape for later reads, the keys of ``wanted`` that are there (in
    ``wanted``'s order) and their values. A line of another shape (more words, a
    unit other than ``unit``) counts for nothing; a wanted key whose value is not a
    number is left out and the shape is ``None``, so the next read learns again.
    """
    at: dict[bytes, int] = {}
    numbers: dict[bytes, int] = {}
    keep = True
    wanted_set = frozenset(wanted)
    n = 0
    for line in raw.split(b"\n"):
        parts = line.split()
        if parts and parts[0] in wanted_set and (len(parts) == 2 or (len(parts) == 3 and unit and parts[2] == unit)):
            try:
                numbers[parts[0]] = int(parts[1])
                at[parts[0]] = n
            except ValueError:
                keep = False
        n += len(parts)
    present = tuple(k for k in wanted if k in at)
    shape = Shape(n, [at[k] for k in present], present, [at[k] + 1 for k in present]) if keep else None
    return shape, present, [numbers[k] for k in present]


def tokens_by_line(lines: list[bytes], counts: list[int]) -> list[bytes] | None:
    """The tokens of ``lines`` in one list, or ``None`` unless each line has as many
    as ``counts`` says (as when its layout was learnt): a line that gained or lost a
    token would shift every position after it."""
    split = list(map(bytes.split, lines))
    if list(map(len, split)) != counts:
        return None
    return list(chain.from_iterable(split))
