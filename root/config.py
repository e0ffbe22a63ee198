"""The root's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.config import Endpoint


@dataclass(frozen=True, slots=True)
class RootConfig:
    """Settings of ``clumon-root``."""

    name: str = "root"
    #: where aggregators (and agents without one) connect
    listen: Endpoint = Endpoint("tcp://*:7400")
    #: where clients (``clumon``) send queries
    query: Endpoint = Endpoint("tcp://*:7401")
    #: host:port of the HTTP /metrics endpoint; empty to disable
    metrics: str = "127.0.0.1:7402"
    #: nodes not heard from for this long drop out of /metrics
    metrics_stale_after: float = 300.0
    #: SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...
    database: str = "sqlite:////var/lib/clumon/root/clumon.db"
    state_dir: Path = Path("/var/lib/clumon/root")
    heartbeat_interval: float = 5.0
    down_after: float = 30.0
    #: seconds between commits (frames are acked only after theirs)
    commit_interval: float = 0.05
    commit_max_frames: int = 20000
    #: frames held in memory while the database is away; beyond this, new frames
    #: are dropped unacknowledged (their senders keep and replay them)
    max_pending_frames: int = 500_000
    #: DATA frames held while their dictionary is unknown
    max_waiting_frames: int = 100_000
    #: ... and at most this many bytes of them
    max_waiting_bytes: int = 64 * 1024 * 1024
    #: seconds between the root's own health samples (stored like a node's series)
    health_interval: float = 10.0
    #: seconds between storage upkeep runs (rollup flush, compaction, retention)
    maintain_interval: float = 10.0
    #: 1-minute rollup buckets reach SQL at least this often
    rollup_flush: float = 60.0
    #: raw frames are compacted into per-series chunks this long after their window
    compact_after: float = 300.0
    #: how long each tier is kept, seconds: raw, 1m, 30m, 2h, 1d (defaults 3 d,
    #: 30 d, 180 d, 2 y, 10 y); give only the ones to change
    retention: dict[str, float] = field(default_factory=dict)
    #: seconds a request may take when the client gives no deadline
    request_timeout: float = 5.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    log_level: str = "INFO"

    def check(self) -> str | None:
        for key in ("heartbeat_interval", "down_after", "commit_interval", "request_timeout", "health_interval",
                    "maintain_interval", "rollup_flush", "compact_after"):
            if getattr(self, key) <= 0:
                return f"key '{key}': expected a positive number, got {getattr(self, key)!r}"
        if self.metrics and not _host_port(self.metrics):
            return f"key 'metrics': expected host:port (e.g. 127.0.0.1:7402), got {self.metrics!r}"
        for tier, seconds in self.retention.items():
            if tier not in TIERS:
                return f"key 'retention.{tier}': unknown tier (expected one of {', '.join(TIERS)})"
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                return f"key 'retention.{tier}': expected a positive number of seconds, got {seconds!r}"
        if "://" not in self.database:
            return f"key 'database': expected an SQLAlchemy URL (sqlite:///file.db), got {self.database!r}"
        return None


TIERS = ("raw", "1m", "30m", "2h", "1d")


def _host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 <= int(port) < 65536
