"""The aggregator's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.config import ChildLink, Endpoint


@dataclass(frozen=True, slots=True)
class AggregatorConfig(ChildLink):
    """Settings of ``clumon-aggregator``."""

    #: routing id towards the parent; the host name when empty
    name: str = ""
    #: where children connect
    listen: Endpoint = Endpoint("tcp://*:7400")
    #: parents in order of preference (another aggregator or the root)
    parents: tuple[Endpoint, ...] = (Endpoint("tcp://localhost:7400"),)
    state_dir: Path = Path("/var/lib/clumon/aggregator")
    #: flush a BATCH at this many frames ...
    batch_max_frames: int = 1000
    #: ... or after this many seconds, whichever first
    batch_max_delay: float = 0.05
    #: seconds between the aggregator's own health samples
    health_interval: float = 10.0
    #: a child silent this long is down
    down_after: float = 30.0
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_max_age: float = 3600.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    log_level: str = "INFO"

    def check(self) -> str | None:
        if not self.parents:
            return "key 'parents': expected at least one endpoint"
        if self.batch_max_frames < 1:
            return f"key 'batch_max_frames': expected an int >= 1, got {self.batch_max_frames!r}"
        for key in ("batch_max_delay", "heartbeat_interval", "down_after", "failover_after", "health_interval"):
            if getattr(self, key) <= 0:
                return f"key '{key}': expected a positive number, got {getattr(self, key)!r}"
        return None
