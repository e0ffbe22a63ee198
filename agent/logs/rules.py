"""Patterns over log lines: each rule counts its matches and may make an EVENT.

Rules run over a whole chunk of lines at once (one ``finditer`` over the joined
text per rule, in C) rather than line by line: at 100 lines a second, eight
regexes a line would cost more than the whole tailer is allowed.
"""

from __future__ import annotations

import bisect
import re
from itertools import accumulate
from dataclasses import dataclass

from .config import LogRuleConfig

#: Words without which a default rule cannot match: the rule's regex runs over a
#: chunk only when one of them is in it (a substring search, far cheaper).
_NEEDS = {
    "oom_kill": ("of memory", "oom-kill"),
    "mce": ("Hardware Error", "Machine "),
    "edac": ("EDAC",),
    "lustre_eviction": ("Lustre",),
    "gpfs_eviction": ("mmfs", "GPFS"),
    "nfs_not_responding": ("not responding",),
    "segfault": ("segfault at",),
    "sshd_failed_login": ("sshd[",),
}

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
    #: one of these is in every line it matches (None: no such words known)
    needs: tuple[str, ...] | None = None


_META = re.compile(r"[.^$*+?{}\[\]\\|()]")


def _needs(r: LogRuleConfig, default: bool) -> tuple[str, ...] | None:
    if default:
        return _NEEDS.get(r.name)
    return None if _META.search(r.pattern) else (r.pattern,)


def compile_rules(rules: tuple[LogRuleConfig, ...], defaults: bool) -> list[Rule]:
    """The rules in force: the configured ones, then the defaults not overridden by name."""
    own = {r.name for r in rules}
    chosen = list(rules) + ([r for r in DEFAULT_RULES if r.name not in own] if defaults else [])
    return [Rule(r.name, re.compile(r.pattern, re.M), r.source, r.event, _needs(r, r.name not in own))
            for r in chosen]


def line_starts(lines: list[str]) -> list[int]:
    """Where each line begins in ``"\\n".join(lines)``."""
    return list(accumulate((len(x) + 1 for x in lines[:-1]), initial=0)) if lines else []


def matches(rules: list[Rule], source: str, text: str, starts: list[int]) -> list[tuple[int, Rule]]:
    """(line index, rule) for each line a rule matches, at most once per rule a line.

    ``text`` is the lines joined by newlines, ``starts`` where each begins. A
    pattern that spans a newline is taken for the line it begins in."""
    out = []
    for rule in rules:
        if rule.source and rule.source != source:
            continue
        if rule.needs is not None and not any(w in text for w in rule.needs):
            continue
        last = -1
        for m in rule.rx.finditer(text):
            i = bisect.bisect_right(starts, m.start()) - 1
            if i != last:
                out.append((i, rule))
                last = i
    return out
