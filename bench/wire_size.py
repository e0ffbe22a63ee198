"""Bytes on the wire for this node's real agent frames, without change suppression.

Runs the agent's own collectors and sampler (the series dictionary, the columnar
DATA body) on this machine and encodes the frames exactly as the agent does, with
a day-old seq (86,400 at 1 Hz: a 5-byte uint32 on the wire, not a 1-byte fixint).
Prints one JSON line:

* ``bytes_per_frame``, ``values_per_frame``, ``bytes_per_value``: a full DATA
  frame (every series, no index), as the first sweep and every sync read send it;
* ``sched_*``: one simulated minute of the agent's schedule (each source at its
  own interval: most every second, filesystems every 30 s, processes every 10 s),
  where frames carry only the due sources and therefore an index;
* ``hello_bytes``: the HELLO (series dictionary and inventory), sent once per
  dictionary version;
* ``dict_of_names_*``: the same values packed as a msgpack map of names, the
  naive alternative, for comparison;
* ``batch_overhead_bytes``: what wrapping the frame in an aggregator's BATCH adds.

    python bench/wire_size.py [--seconds N] [--per-cpu] [--name NODE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import msgpack

from clumon.agent.collectors import default_collectors, inventory
from clumon.agent.sampler import Sampler
from clumon.proto import codec
from clumon.proto.frames import Data, Hello, make

DAY_SEQ = 86_400


class FakeClock:
    """The sampler's monotonic clock, advanced by hand to walk its schedule."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def data_frame(name: str, incarnation: int, sampler: Sampler, values: dict[str, float | None], seq: int) -> bytes:
    """A DATA frame built the way the agent builds it (agent/service.py _publish)."""
    d = sampler.dictionary
    index, column = d.columns(values)
    return codec.encode(make(name, incarnation, time.time(), Data.from_values(d.version, column, index), seq))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="simulated schedule length (1..3600)")
    parser.add_argument("--per-cpu", action="store_true", help="include per-CPU series (off by default)")
    parser.add_argument("--name", default=os.uname().nodename, help="sender name (default: this host's name)")
    args = parser.parse_args()
    seconds = max(1, min(args.seconds, 3600))

    name = args.name
    incarnation = time.time_ns()
    clock = FakeClock()
    sampler = Sampler(default_collectors(per_cpu=args.per_cpu), 1.0, clock=clock)
    sampler.read_all()  # primes rate-based collectors
    time.sleep(0.2)
    clock.t += 1.0
    full = sampler.read_all()

    frame = data_frame(name, incarnation, sampler, full.values, DAY_SEQ)
    n = len(full.values)
    d = sampler.dictionary
    hello = codec.encode(make(name, incarnation, time.time(), Hello(d.version, tuple(d.names), inventory(), "agent"), 1))
    by_name = msgpack.packb({k: v for k, v in full.values.items()}, use_bin_type=True)
    batch = codec.encode_batch("rack-01", incarnation, time.time(), [frame])

    # One simulated stretch of the agent's schedule: what a node sends per second.
    sched_bytes = sched_values = sched_frames = 0
    for _ in range(seconds):
        clock.t += 1.0
        due = sampler.due()
        if not due:
            continue
        reading = sampler.read(due)
        if reading.values:
            sched_bytes += len(data_frame(name, incarnation, sampler, reading.values, DAY_SEQ))
            sched_values += len(reading.values)
            sched_frames += 1

    print(json.dumps({
        "bench": "wire_size",
        "host_cores": os.cpu_count(),
        "python": platform.python_version(),
        "bytes_per_frame": len(frame),
        "bytes_per_value": round(len(frame) / n, 3),
        "values_per_frame": n,
        "values_missing": sum(1 for v in full.values.values() if v is None),
        "header_bytes": len(frame) - 8 * n,
        "sender_chars": len(name),
        "per_cpu": args.per_cpu,
        "hello_bytes": len(hello),
        "dict_of_names_bytes": len(by_name),
        "dict_of_names_bytes_per_value": round(len(by_name) / n, 3),
        "batch_overhead_bytes": len(batch) - len(frame),
        "sched_seconds": seconds,
        "sched_frames": sched_frames,
        "sched_values_per_s": round(sched_values / seconds, 1),
        "sched_bytes_per_value": round(sched_bytes / max(sched_values, 1), 3),
        "sched_wire_bytes_per_s": round(sched_bytes / seconds, 1),
    }))


if __name__ == "__main__":
    main()
