"""The agent's ``[scheduler]`` table: which scheduler, which cluster, how often.

Read here rather than in ``clumon.agent.config`` so an agent without the table
never imports this package; ``AgentConfig.check`` calls ``problem()`` at load
time, so a bad table is the usual one-line config error (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

KINDS = ("slurm", "pbs", "lsf")


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Settings of the scheduler source."""

    #: slurm, pbs (qstat/pbsnodes: Torque, OpenPBS, PBS Pro, slurm-wlm-torque) or lsf
    kind: str
    #: the ``cluster`` label of every figure (one root may hold several clusters)
    cluster: str
    #: seconds between polls
    interval: float = 30.0
    #: a command still running after this many seconds is killed and reported
    timeout: float = 20.0
    #: directory of the scheduler's commands; empty: found on the agent's PATH
    bin_dir: str = ""
    #: a failure that goes on is reported again after this many seconds
    report_every: float = 600.0
    #: every job listed is sent again this often (and at start), so the root can
    #: end the jobs that left the listing while the agent was away
    jobs_sync_every: float = 3600.0


_TYPES = {"kind": str, "cluster": str, "interval": float, "timeout": float, "bin_dir": str,
          "report_every": float, "jobs_sync_every": float}


def _value(key: str, value: Any) -> Any:
    want = _TYPES[key]
    if want is float and type(value) in (int, float):
        return float(value)
    if type(value) is not want:
        raise ValueError(f"key 'scheduler.{key}': expected {'a number' if want is float else 'a string'}, got {value!r}")
    return value


def _check(cfg: SchedulerConfig) -> None:
    if cfg.kind not in KINDS:
        raise ValueError(f"key 'scheduler.kind': expected one of {', '.join(KINDS)}, got {cfg.kind!r}")
    if not cfg.cluster or any(c in cfg.cluster for c in '"\\\n'):
        raise ValueError(f"key 'scheduler.cluster': expected a name without quotes or backslashes, got {cfg.cluster!r}")
    if not 1 <= cfg.interval <= 86400:
        raise ValueError(f"key 'scheduler.interval': expected seconds from 1 to 86400, got {cfg.interval!r}")
    if not 0 < cfg.timeout <= 3600:
        raise ValueError(f"key 'scheduler.timeout': expected seconds above 0, at most 3600, got {cfg.timeout!r}")
    if not 0 < cfg.report_every <= 86400 * 7:
        raise ValueError(f"key 'scheduler.report_every': expected seconds above 0, at most a week, got {cfg.report_every!r}")
    if not cfg.interval <= cfg.jobs_sync_every <= 86400 * 7:
        raise ValueError(f"key 'scheduler.jobs_sync_every': expected seconds from 'interval' to a week, "
                         f"got {cfg.jobs_sync_every!r}")


def parse(table: dict[str, Any]) -> SchedulerConfig:
    """The table as a config; raises ValueError naming the key and what was wrong."""
    known = {f.name for f in fields(SchedulerConfig)}
    for key in table:
        if key not in known:
            raise ValueError(f"unknown key 'scheduler.{key}' (known: {', '.join(sorted(known))})")
    for key in ("kind", "cluster"):
        if key not in table:
            raise ValueError(f"missing key 'scheduler.{key}'")
    cfg = SchedulerConfig(**{k: _value(k, v) for k, v in table.items()})
    _check(cfg)
    return cfg


def problem(table: dict[str, Any]) -> str | None:
    """What is wrong with the table, or None (for ``AgentConfig.check``)."""
    try:
        parse(table)
    except ValueError as exc:
        return str(exc)
    return None
