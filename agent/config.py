"""The agent's configuration: one frozen dataclass, loaded from TOML in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clumon.proto.maskrules import MAX_SILENCE, MIN_CHANGE, MIN_CHANGE_ABS, MaskError, MaskSet, parse_rule
from clumon.proto.codec import MAX_FRAME_BYTES
from clumon.agent.logs.config import LogConfig, LogRuleConfig, check_logs
from clumon.agent.watch.config import ProcessesConfig, ServiceConfig, WhenThen, check_all
from clumon.proto.config import (DAY, HOUR, ChildLink, Endpoint, MapOf, Pattern, Range, between, checked,
                                 log_level, max_frame_bytes, name_field, spool_max_age, spool_max_bytes)


#: The default mask set: every series passes, change suppression does the rest.
DEFAULT_RULES: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MaskConfig:
    """The ``[masks]`` table: the mask set in force until a CONTROL replaces it."""

    #: numbered rules, e.g. ["10 node_uptime_seconds U", "20 node_top_* B 0.01 1", "90 x drop"]
    rules: tuple[str, ...] = DEFAULT_RULES
    #: send a value when it moved by more than this share of the value last sent ...
    min_change: float = between(MIN_CHANGE, 0.0, 1e6, low_open=False)
    #: ... or by more than this much near zero ...
    min_change_abs: float = between(MIN_CHANGE_ABS, 0.0, 1e300, low_open=False)
    #: ... or when it was last sent this many seconds ago (0 sends every value every time)
    max_silence: float = between(MAX_SILENCE, 0.0, DAY, low_open=False)

    def check(self) -> str | None:
        for i, text in enumerate(self.rules):
            try:
                parse_rule(text)
            except MaskError as exc:
                return f"key 'masks.rules[{i}]': {exc}"
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
    name: str = name_field("")
    #: parents in order of preference; the agent fails over down this list
    parents: tuple[Endpoint, ...] = (Endpoint("tcp://localhost:7400"),)
    state_dir: Path = Path("/var/lib/clumon/agent")
    #: default seconds between reads of a source
    interval: float = between(1.0, 0.01, DAY)
    #: per-source intervals, e.g. {filesystem = 30, processes = 10}
    intervals: dict[str, float] = checked(check=MapOf(Range(0.0, DAY, low_open=True)), default_factory=dict)
    #: sources to run (all default sources when empty)
    collectors: tuple[str, ...] = ()
    per_cpu: bool = False
    procfs: str = checked("/proc", Pattern(r"[^\x00]+", 4096, "a directory"))
    spool_max_bytes: int = spool_max_bytes(256 * 1024 * 1024)
    spool_max_age: float = spool_max_age()
    #: on SIGTERM, wait this long for the root to acknowledge what was sent
    drain_timeout: float = between(2.0, 0.0, HOUR, low_open=False)
    #: the parent may hold this agent's ACKs this many seconds and send them as one
    #: (each ACK wakes the agent); 0 asks for every ACK at once
    ack_every: float = between(5.0, 0.0, HOUR, low_open=False)
    max_frame_bytes: int = max_frame_bytes(MAX_FRAME_BYTES)
    log_level: str = log_level()
    #: the mask set loaded at start (a set_masks CONTROL, kept in state_dir, wins)
    masks: MaskConfig = MaskConfig()
    #: load Python collectors registered under the entry-point group ``clumon.collectors``
    entry_points: bool = True
    #: directory of executable plugins (Prometheus text or Nagios output); empty: none
    plugin_dir: str = ""
    #: default seconds between runs of an executable plugin (``intervals.NAME`` overrides)
    plugin_interval: float = between(60.0, 0.01, DAY)
    #: a plugin still running after this many seconds is killed and reported
    plugin_timeout: float = between(10.0, 0.01, DAY)
    #: ``*_ratio`` series (0..1) are rounded to this many decimals where they are
    #: read, before change suppression; 0 keeps every bit (see deploy/agent.toml)
    ratio_digits: int = between(5, 0, 15)
    #: the ``[scheduler]`` table (read by clumon.agent.scheduler.config); none: no scheduler source
    scheduler: dict[str, Any] | None = None
    #: ``[[service]]`` tables: services watched (and kept running)
    service: tuple[ServiceConfig, ...] = ()
    #: ``[processes]``: forbidden, suspicious and over-limit processes; none: not judged
    processes: ProcessesConfig | None = None
    #: ``[[rule]]`` tables: node-manager rules (when a service enters a state, then ...)
    rule: tuple[WhenThen, ...] = ()
    #: ``[[log]]`` tables: log files tailed and sent to the root
    log: tuple[LogConfig, ...] = ()
    #: ``[[log_rule]]`` tables: patterns counted (and made events) over those lines
    log_rule: tuple[LogRuleConfig, ...] = ()
    #: the default HPC patterns (OOM kills, MCE/EDAC, Lustre/GPFS evictions, NFS, segfaults, sshd)
    log_default_rules: bool = True
    #: seconds between looks at the log files (a look costs ~0.6 ms of a cold CPU whatever
    #: it reads: 2 s keeps 100 lines/s under 0.05 % of a core; see docs/ARCHITECTURE.md)
    log_poll_interval: float = between(2.0, 0.01, HOUR)

    def check(self) -> str | None:
        """Cross-field checks the declared ranges cannot express."""
        if not self.parents:
            return "key 'parents': expected at least one endpoint"
        bad = self.curve.problem(len(self.parents), serves=False)
        if bad:
            return bad
        from clumon.agent.collectors.registry import SOURCES

        for i, name in enumerate(self.collectors):
            if name not in SOURCES:
                return f"key 'collectors[{i}]': expected one of {', '.join(SOURCES)}, got {name!r}"
        unknown = [src for src in self.intervals if src not in SOURCES]
        if unknown:
            known = set(SOURCES) | self._plugin_names()
            for src in unknown:
                if src not in known:
                    return (f"key 'intervals.{src}': unknown source (expected a collector: {', '.join(SOURCES)}; "
                            f"or a plugin's name)")
        if self.service or self.rule:
            bad = check_all(self.service, self.rule)
            if bad:
                return bad
        if self.log or self.log_rule:
            bad = check_logs(self.log, self.log_rule)
            if bad:
                return bad
        if self.scheduler is not None:
            from clumon.agent.scheduler.config import problem
            return problem(self.scheduler)
        return None

    def _plugin_names(self) -> set[str]:
        """Names of the plugins this agent would run: executables in ``plugin_dir``
        and entry points of the collector group."""
        names: set[str] = set()
        if self.plugin_dir:
            from clumon.agent.execplugins import scan
            names |= {p.name for p in scan(Path(self.plugin_dir))}
        if self.entry_points:
            from clumon.agent.plugins import GROUP, group_declared
            if group_declared(GROUP):
                from importlib.metadata import entry_points
                names |= {ep.name for ep in entry_points(group=GROUP)}
        return names
