"""Compressed chunks of one series: timestamps and float64 values, lossless.

Format (version 3; versions 1 and 2 are still read, see below)::

    byte 0        format version (3)
    bytes 1..     one zstd frame holding:
        u32 n                   number of points
        i64 t0_ms               first timestamp, integer milliseconds
        u8  t_width             bytes per whole-second gap (1, 2, 4 or 8)
        u8  j_width             bytes per millisecond jitter (1, 2, 4 or 8)
        u8  v_mode              0 = XOR, 1..19 = decimal with (mode - 1) digits
        u8  v_width             bytes per value integer (mode > 0; else 8)
        u8  r_width             bytes per residual (decimal mode; 0 = none)
        u64 step                decimal mode: every delta below is a multiple
                                of ``step`` and is stored divided by it (byte
                                counts of pages move by 4096); else 1
        (n-1) * t_width         each gap between timestamps, d ms, as whole
                                seconds k = round(d / 1000): zigzag(k - 1),
                                byte-planes (all first bytes, then all second ...)
        (n-1) * j_width         ... and the rest, zigzag(d - 1000 k), byte-planes
        n * v_width             values, byte-planes:
                                  XOR mode: each float64's bits XOR the previous;
                                  decimal mode: zigzag of (delta of
                                  round(v * 10**d)) / step.
        n * r_width             decimal mode: zigzag of bits(v) - bits(int / 10**d),
                                byte-planes (the few ulps by which a computed
                                value such as 20.3 / 100 misses the decimal 0.203).

Version 2 stores, instead of the two gap columns, one: the delta-of-delta of
the ms timestamps (``t_width`` bytes, no ``j_width``); version 1 is version 2
without ``step``. Splitting gaps into seconds and jitter suits what agents send
(every second, a few ms late or early; with change suppression, every few
seconds): the seconds column is nearly constant and the jitter small, where a
delta-of-delta mixes both (masked data: 0.39 -> 0.30 B/point for timestamps).

All little-endian. Everything is vectorised with numpy; zstd then removes the
zeros that regular sampling, slow change and shuffling leave. Decimal mode is
chosen when every value of the chunk lies within ``MAX_RESIDUAL_ULPS`` of a
decimal with ``d`` digits (integers, counters, values with few decimals, and
those computed from them); values that do not (full-precision ratios) use the
XOR mode. Timestamps keep millisecond resolution.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

FORMAT_VERSION = 3
_HEAD_V1 = struct.Struct("<IqBBBB")
_HEAD_V2 = struct.Struct("<IqBBBBQ")
_HEAD = struct.Struct("<IqBBBBBQ")
_HEADS = {1: _HEAD_V1, 2: _HEAD_V2, 3: _HEAD}
MAX_RESIDUAL_ULPS = 255
_MAX_DECIMALS = 18
_INT_WIDTHS = ((1, np.uint8), (2, np.uint16), (4, np.uint32), (8, np.uint64))
_compressor = zstandard.ZstdCompressor(level=9)


class ChunkError(ValueError):
    """The bytes are not a valid chunk."""


def _zigzag(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    return ((a << 1) ^ (a >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -((u & np.uint64(1)).view(np.int64))


def _narrow(u: np.ndarray) -> tuple[int, bytes]:
    """Smallest width holding every value of ``u`` and its byte-planes."""
    top = int(u.max()) if len(u) else 0
    for width, dtype in _INT_WIDTHS:
        if top < 1 << (8 * width):
            planes = u.astype(dtype).view(np.uint8).reshape(-1, width).T
            return width, planes.tobytes()
    raise AssertionError("unreachable")


def _widen(buf: bytes, n: int, width: int) -> np.ndarray:
    if width not in dict(_INT_WIDTHS):
        raise ChunkError(f"bad integer width {width}")
    dtype = dict(_INT_WIDTHS)[width]
    planes = np.frombuffer(buf, dtype=np.uint8, count=n * width).reshape(width, n)
    return planes.T.copy().view(dtype).reshape(n).astype(np.uint64)


def _decimals(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Fewest decimal digits ``d`` with every value within a few ulps of
    ``int / 10**d``: (d, ints, residuals in ulps), or None."""
    if not np.all(np.isfinite(values)):
        return None
    if np.any((values == 0) & np.signbit(values)):
        return None  # -0.0 has no integer form; the XOR mode keeps its sign bit
    bits = values.view(np.int64)
    for d in range(_MAX_DECIMALS + 1):
        scale = 10.0**d
        scaled = values * scale
        if np.any(np.abs(scaled) >= 2.0**53):
            return None
        ints = np.round(scaled).astype(np.int64)
        # The residual is taken from exactly what decode() rebuilds: int64 / 10**d.
        # Not from the float np.round result, which is -0.0 for a tiny negative
        # value (-5e-324 rounds to -0.0, 1 ulp away) while the integer 0 comes
        # back as +0.0: the sign bit was lost.
        residual = bits - (ints / scale).view(np.int64)
        # abs() of int64 -2**63 stays negative: compare as unsigned.
        if np.all(np.abs(residual).view(np.uint64) <= MAX_RESIDUAL_ULPS):
            return d, ints, residual
    return None


def encode(ts: np.ndarray, values: np.ndarray) -> bytes:
    """Encode points (``ts`` in seconds, sorted; ``values`` float64) as a chunk."""
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    n = len(ts)
    if n == 0 or n != len(values):
        raise ValueError("a chunk needs at least one point and one value per time")
    ms = np.round(ts * 1000.0).astype(np.int64)
    gaps = np.diff(ms)
    seconds = (gaps + 500) // 1000
    t_width, t_bytes = _narrow(_zigzag(seconds - 1))
    j_width, j_bytes = _narrow(_zigzag(gaps - 1000 * seconds))
    decimal = _decimals(values)
    r_width, r_bytes, step = 0, b"", 1
    if decimal is None:
        bits = values.view(np.uint64)
        xored = bits ^ np.concatenate(([np.uint64(0)], bits[:-1]))
        v_mode, v_width = 0, 8
        v_bytes = xored.view(np.uint8).reshape(-1, 8).T.tobytes()
    else:
        digits, ints, residual = decimal
        v_mode = digits + 1
        deltas = np.diff(ints, prepend=0)
        step = max(int(np.gcd.reduce(deltas)), 1)
        v_width, v_bytes = _narrow(_zigzag(deltas // step))
        if np.any(residual):
            r_width, r_bytes = _narrow(_zigzag(residual))
    body = (_HEAD.pack(n, int(ms[0]), t_width, j_width, v_mode, v_width, r_width, step)
            + t_bytes + j_bytes + v_bytes + r_bytes)
    return bytes([FORMAT_VERSION]) + _compressor.compress(body)


def decode(chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The points of a chunk: (timestamps in seconds, float64 values)."""
    if not chunk or chunk[0] not in _HEADS:
        raise ChunkError("unknown chunk format")
    version, head = chunk[0], _HEADS[chunk[0]]
    try:
        body = zstandard.ZstdDecompressor().decompress(chunk[1:])
        fields = head.unpack_from(body)
    except (zstandard.ZstdError, struct.error) as exc:
        raise ChunkError(f"corrupt chunk: {exc}") from None
    if version < 3:  # one timestamp column, no j_width
        fields = fields[:3] + (0,) + fields[3:]
    n, t0, t_width, j_width, v_mode, v_width, r_width, *rest = fields
    step = rest[0] if rest else 1
    pos = head.size
    size = pos + (n - 1) * (t_width + j_width) + n * (v_width + r_width)
    if (n == 0 or len(body) != size or v_mode > _MAX_DECIMALS + 1 or step < 1 or step >= 1 << 63
            or (v_mode == 0 and (v_width, r_width, step) != (8, 0, 1))
            or (version == 3 and j_width not in dict(_INT_WIDTHS))):
        raise ChunkError("chunk length does not match its header")
    ms = _times(body, pos, n, t0, t_width, j_width, version)
    pos += (n - 1) * (t_width + j_width)
    raw = _widen(body[pos:], n, v_width)
    if v_mode == 0:
        values = np.bitwise_xor.accumulate(raw).view(np.float64)
    else:
        values = np.cumsum(_unzigzag(raw) * np.int64(step)) / 10.0 ** (v_mode - 1)
        if r_width:
            residual = _unzigzag(_widen(body[pos + n * v_width :], n, r_width))
            values = (values.view(np.int64) + residual).view(np.float64)
    return ms / 1000.0, values


def _times(body: bytes, pos: int, n: int, t0: int, t_width: int, j_width: int, version: int) -> np.ndarray:
    """Integer ms timestamps from the gap columns (v3) or delta-of-delta (v1, v2)."""
    first = _unzigzag(_widen(body[pos:], n - 1, t_width))
    if version < 3:
        gaps = np.cumsum(first)
    else:
        jitter = _unzigzag(_widen(body[pos + (n - 1) * t_width:], n - 1, j_width))
        gaps = (first + 1) * 1000 + jitter
    return np.concatenate(([t0], t0 + np.cumsum(gaps))).astype(np.int64)
