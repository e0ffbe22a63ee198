"""Patterns over log lines: each rule counts its matches and may make an EVENT.

Rules run over a whole chunk of lines at once (one ``finditer`` over the joined
text per rule, in C) rather than line by line: at 100 lines a second, eight
regexes a line would cost more than the whole tailer is allowed.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .config import LogRuleConfig

#: The default set for HPC nodes (``log_default_rules = false`` turns it off).
DEFAULT_RULES: tuple[LogRuleConfig, ...] = (
    LogRuleConfig("oom_kill", r"Out of memory: Kill|oom-kill:|invoked oom-killer|Memory cgroup out of memory"),
    LogRuleConfig("mce", r"mce: \[Hardware Error\]|Machine check events logged|Machine Check Exception"),
    LogRuleConfig("edac", r"EDAC \S+: .*(?:CE|UE|[Ee]rror)"),
    LogRuleConfig("lustre_eviction", r"(?:Lustre|LustreError).*(?:evict|been evicted)"),
    LogRuleConfig("gpfs_eviction", r"(?:mmfs|GPFS).*(?:[Ee]xpel|evict)"),
    LogRuleConfig("nfs_not_responding", r"nfs: server \S+ not responding"),
    LogRuleConfig("segfault", r"segfault at [0-9a-f]+"),
    LogRuleConfig("sshd_failed_login", r"sshd\[\d+\]: (?:Failed password|Invalid user|authentication failure)"),
)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    rx: re.Pattern
    source: str
    event: bool


def compile_rules(rules: tuple[LogRuleConfig, ...], defaults: bool) -> list[Rule]:
    """The rules in force: the configured ones, then the defaults not overridden by name."""
    own = {r.name for r in rules}
    chosen = list(rules) + ([r for r in DEFAULT_RULES if r.name not in own] if defaults else [])
    return [Rule(r.name, re.compile(r.pattern, re.M), r.source, r.event) for r in chosen]


def line_starts(lines: list[str]) -> list[int]:
    """Where each line begins in ``"\\n".join(lines)``."""
    out, at = [], 0
    for line in lines:
        out.append(at)
        at += len(line) + 1
    return out


def matches(rules: list[Rule], source: str, text: str, starts: list[int]) -> list[tuple[int, Rule]]:
    """(line index, rule) for each line a rule matches, at most once per rule a line.

    ``text`` is the lines joined by newlines, ``starts`` where each begins. A
    pattern that spans a newline is taken for the line it begins in."""
    out = []
    for rule in rules:
        if rule.source and rule.source != source:
            continue
        last = -1
        for m in rule.rx.finditer(text):
            i = bisect.bisect_right(starts, m.start()) - 1
            if i != last:
                out.append((i, rule))
                last = i
    return out
