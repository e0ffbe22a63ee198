"""The agent's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.config import Endpoint
from clumon.proto.uplink import LinkTimings


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Settings of ``clumon-agent``; every timing lives here so tests pass short ones."""

    #: routing id and node name; the host name when empty
    name: str = ""
    #: parents in order of preference; the agent fails over down this list
    parents: tuple[Endpoint, ...] = (Endpoint("tcp://localhost:7400"),)
    state_dir: Path = Path("/var/lib/clumon/agent")
    #: default seconds between reads of a source
    interval: float = 1.0
    #: per-source intervals, e.g. {filesystem = 30, processes = 10}
    intervals: dict[str, float] = field(default_factory=dict)
    #: sources to run (all default sources when empty)
    collectors: tuple[str, ...] = ()
    per_cpu: bool = False
    procfs: str = "/proc"
    heartbeat_interval: float = 5.0
    failover_after: float = 15.0
    resend_after: float = 30.0
    #: the first HELLO and reconnects wait up to this long, so a restarted
    #: parent sees no storm
    jitter: float = 1.0
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_max_age: float = 3600.0
    #: on SIGTERM, wait this long for the root to acknowledge what was sent
    drain_timeout: float = 2.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    log_level: str = "INFO"

    def check(self) -> str | None:
        """Cross-field checks the type system cannot express."""
        if not self.parents:
            return "key 'parents': expected at least one endpoint"
        for key in ("interval", "heartbeat_interval", "failover_after", "resend_after"):
            if getattr(self, key) <= 0:
                return f"key '{key}': expected a positive number, got {getattr(self, key)!r}"
        for src, value in self.intervals.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                return f"key 'intervals.{src}': expected a positive number of seconds, got {value!r}"
        return None

    @property
    def node_name(self) -> str:
        return self.name or socket.gethostname()

    @property
    def timings(self) -> LinkTimings:
        return LinkTimings(self.heartbeat_interval, self.failover_after, self.resend_after, self.jitter)
