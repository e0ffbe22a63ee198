"""The agent's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clumon.proto.maskrules import MAX_SILENCE, MIN_CHANGE, MIN_CHANGE_ABS, MaskError, MaskSet, parse_rule
from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.proto.config import ChildLink, Endpoint


#: The default mask set: every series passes, change suppression does the rest.
DEFAULT_RULES: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MaskConfig:
    """The ``[masks]`` table: the mask set in force until a CONTROL replaces it."""

    #: numbered rules, e.g. ["10 node_uptime_seconds U", "20 node_top_* B 0.01 1", "90 x drop"]
    rules: tuple[str, ...] = DEFAULT_RULES
    #: send a value when it moved by more than this share of the value last sent ...
    min_change: float = MIN_CHANGE
    #: ... or by more than this much near zero ...
    min_change_abs: float = MIN_CHANGE_ABS
    #: ... or when it was last sent this many seconds ago (0 sends every value every time)
    max_silence: float = MAX_SILENCE

    def check(self) -> str | None:
        for i, text in enumerate(self.rules):
            try:
                parse_rule(text)
            except MaskError as exc:
                return f"key 'masks.rules[{i}]': {exc}"
        for key in ("min_change", "min_change_abs", "max_silence"):
            v = getattr(self, key)
            if not 0 <= v < float("inf"):
                return f"key 'masks.{key}': expected a finite number >= 0, got {v!r}"
        try:
            self.mask_set()
        except MaskError as exc:
            return f"key 'masks.rules': {exc}"
        return None

    def mask_set(self) -> MaskSet:
        return MaskSet.from_texts(self.rules, self.min_change, self.min_change_abs, self.max_silence)


@dataclass(frozen=True, slots=True)
class AgentConfig(ChildLink):
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
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_max_age: float = 3600.0
    #: on SIGTERM, wait this long for the root to acknowledge what was sent
    drain_timeout: float = 2.0
    #: the parent may hold this agent's ACKs this many seconds and send them as one
    #: (each ACK wakes the agent); 0 asks for every ACK at once
    ack_every: float = 5.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    log_level: str = "INFO"
    #: the mask set loaded at start (a set_masks CONTROL, kept in state_dir, wins)
    masks: MaskConfig = MaskConfig()
    #: load Python collectors registered under the entry-point group ``clumon.collectors``
    entry_points: bool = True
    #: directory of executable plugins (Prometheus text or Nagios output); empty: none
    plugin_dir: str = ""
    #: default seconds between runs of an executable plugin (``intervals.NAME`` overrides)
    plugin_interval: float = 60.0
    #: a plugin still running after this many seconds is killed and reported
    plugin_timeout: float = 10.0
    #: ``*_ratio`` series (0..1) are rounded to this many decimals where they are
    #: read, before change suppression; 0 keeps every bit (see deploy/agent.toml)
    ratio_digits: int = 5

    def check(self) -> str | None:
        """Cross-field checks the type system cannot express."""
        if not self.parents:
            return "key 'parents': expected at least one endpoint"
        for key in ("interval", "heartbeat_interval", "failover_after", "resend_after",
                    "plugin_interval", "plugin_timeout"):
            if getattr(self, key) <= 0:
                return f"key '{key}': expected a positive number, got {getattr(self, key)!r}"
        if not 0 <= self.ack_every < 3600:
            return f"key 'ack_every': expected seconds from 0 to 3600, got {self.ack_every!r}"
        if isinstance(self.ratio_digits, bool) or not 0 <= self.ratio_digits <= 15:
            return f"key 'ratio_digits': expected an integer from 0 to 15, got {self.ratio_digits!r}"
        for src, value in self.intervals.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                return f"key 'intervals.{src}': expected a positive number of seconds, got {value!r}"
        return None
