"""The aggregator's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.config import (DAY, ChildLink, Endpoint, between, down_after, log_level, max_frame_bytes,
                                 name_field, spool_max_age, spool_max_bytes)


@dataclass(frozen=True, slots=True)
class AggregatorConfig(ChildLink):
    """Settings of ``clumon-aggregator``."""

    #: routing id towards the parent; the host name when empty
    name: str = name_field("")
    #: where children connect
    listen: Endpoint = Endpoint("tcp://*:7400")
    #: parents in order of preference (another aggregator or the root)
    parents: tuple[Endpoint, ...] = (Endpoint("tcp://localhost:7400"),)
    state_dir: Path = Path("/var/lib/clumon/aggregator")
    #: flush a BATCH at this many frames ...
    batch_max_frames: int = between(1000, 1, 1_000_000)
    #: ... or after this many seconds, whichever first
    batch_max_delay: float = between(0.05, 0.0001, 60.0)
    #: seconds between the aggregator's own health samples
    health_interval: float = between(10.0, 0.1, DAY)
    #: a child silent this long is down
    down_after: float = down_after()
    spool_max_bytes: int = spool_max_bytes(64 * 1024 * 1024)
    spool_max_age: float = spool_max_age()
    max_frame_bytes: int = max_frame_bytes(MAX_FRAME_BYTES)
    log_level: str = log_level()

    def check(self) -> str | None:
        if not self.parents:
            return "key 'parents': expected at least one endpoint"
        return self.curve.problem(len(self.parents), serves=True)
