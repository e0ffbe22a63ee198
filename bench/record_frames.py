"""Extract one node's recorded frames from a root's SQLite file into ``bench/data/``.

How the recordings in ``bench/data/`` were made (on the 2-core development box)::

    clumon-root  --config root.toml     # listen tcp://127.0.0.1:17400,
                                        # database sqlite:////tmp/rec/rec.db,
                                        # compact_after = 1e6 (keep raw frames)
    clumon-agent --config agent.toml    # name rec-node, default masks
    clumon-agent --config agent2.toml   # name rec-full, [masks] min_change = 0,
                                        # min_change_abs = 0, max_silence = 0
    # a few minutes later
    python bench/record_frames.py /tmp/rec/rec.db rec-node bench/data/agent_masked.msgpack.zst
    python bench/record_frames.py /tmp/rec/rec.db rec-full bench/data/agent_full.msgpack.zst

``agent_masked`` is what a node sends with the default masks (0.1 % change
suppression, 30 s max silence); ``agent_full`` sends every series every second.
Both ran with the default ``ratio_digits = 5`` (``_ratio`` series rounded to
1e-5 at the agent); the recordings of 2026-11-23 hold 573 frames each, taken
while other benchmarks loaded the box (so the CPU ratios move).
The file is a zstd-compressed msgpack map ``{"node", "hello", "data"}``: the
frame bytes exactly as the agent sent them (``hello`` the last HELLO, ``data``
every DATA frame of its incarnation, oldest first).
"""

from __future__ import annotations

import argparse
import sqlite3

import msgpack
import zstandard

HELLO, DATA = 1, 2


def extract(db_path: str, node: str) -> dict:
    """The newest incarnation's HELLO and DATA frame bytes of ``node``."""
    db = sqlite3.connect(db_path)
    inc = db.execute("SELECT max(incarnation) FROM frames WHERE node = ?", (node,)).fetchone()[0]
    if inc is None:
        raise SystemExit(f"{db_path}: no frames of {node!r}")
    q = "SELECT kind, payload FROM frames WHERE node = ? AND incarnation = ? ORDER BY seq"
    hello, data = None, []
    for kind, payload in db.execute(q, (node, inc)):
        if kind == HELLO:
            hello = bytes(payload)
        elif kind == DATA:
            data.append(bytes(payload))
    if hello is None:
        raise SystemExit(f"{db_path}: no HELLO of {node!r}")
    return {"node": node, "hello": hello, "data": data}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db")
    ap.add_argument("node")
    ap.add_argument("out")
    args = ap.parse_args()
    rec = extract(args.db, args.node)
    blob = zstandard.ZstdCompressor(level=19).compress(msgpack.packb(rec, use_bin_type=True))
    with open(args.out, "wb") as f:
        f.write(blob)
    print(f"{args.out}: {len(rec['data'])} DATA frames, {len(blob)} bytes")


if __name__ == "__main__":
    main()
