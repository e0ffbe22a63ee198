"""The agent's ``[[log]]`` and ``[[log_rule]]`` tables.

Built by ``clumon.proto.config`` like the rest of the agent's TOML, so an unknown
key, a wrong type or a value out of range is the usual one-line error naming file
and key (exit 2); ``check_logs`` adds what ranges cannot say (a regex that does not
compile, a ``regex`` format without its regex, a rule naming no source).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from clumon.proto.config import Pattern, between, checked, one_of, regex_problem

FORMATS = ("plain", "syslog", "json", "regex")
_NAME = Pattern(r"[A-Za-z0-9_.:-]{1,64}", 64, "a name of letters, digits and _.:-")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """One log source: files matched by a glob, read as one format."""

    #: a glob (``/var/log/slurm/*.log``); its directory may appear later
    path: str = checked("", Pattern(r"/[^\x00]*", 4096, "an absolute path or glob"))
    #: the source's name in queries and series (default: from the path, e.g. ``messages``)
    source: str = checked("", Pattern(r"([A-Za-z0-9_.:-]{1,64})?", 64, "a name of letters, digits and _.:-"))
    format: str = one_of("plain", FORMATS)
    #: for ``format = "regex"``: named groups become fields
    regex: str = ""
    #: a line matching this starts a record; others are appended to the current one (stack traces)
    multiline_start: str = ""
    #: longer lines are cut here and marked
    max_line_bytes: int = between(65536, 64, 1024 * 1024)
    #: only lines matching this (empty: all)
    include: str = ""
    #: lines matching this are left out (counted)
    exclude: str = ""
    #: lines a second from this source; beyond, lines wait in the file (counted, reported); 0: no limit
    rate_limit: float = between(0.0, 0.0, 10_000_000.0, low_open=False)

    @property
    def name(self) -> str:
        return self.source or default_source(self.path)


@dataclass(frozen=True, slots=True)
class LogRuleConfig:
    """A pattern: lines that match are counted (``clumon_log_matches_total``) and,
    with ``event``, stored as an EVENT ``log_match`` too."""

    name: str = checked("", _NAME)
    #: a regex (``re.search``); a plain word is a substring
    pattern: str = ""
    #: only lines of this source (empty: every source)
    source: str = ""
    event: bool = True


def default_source(path: str) -> str:
    """A source name from a path glob: its file name without glob characters,
    extension or rotation suffix (``/var/log/slurm/slurmd*.log`` -> ``slurmd``);
    the directory's name when nothing is left."""
    base = os.path.basename(path)
    stem = re.split(r"[*?\[]", base, maxsplit=1)[0]
    stem = re.sub(r"(\.(log|txt|json|out|err))?[._-]*$", "", stem)
    if not stem:
        stem = os.path.basename(os.path.dirname(path).rstrip("/")) or "log"
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", stem)[:64]


def check_logs(logs: tuple[LogConfig, ...], rules: tuple[LogRuleConfig, ...]) -> str | None:
    """What the declared ranges cannot express; the problem as one line, or None."""
    names: dict[str, int] = {}
    for i, lc in enumerate(logs):
        if not lc.path:
            return f"key 'log[{i}].path': expected a path or glob, e.g. \"/var/log/messages\""
        for key in ("regex", "multiline_start", "include", "exclude"):
            text = getattr(lc, key)
            if text:
                bad = regex_problem(text, f"log[{i}].{key}")
                if bad:
                    return bad
        if lc.format == "regex":
            if not lc.regex:
                return f"key 'log[{i}].regex': format \"regex\" needs a regex with named groups"
            if not re.compile(lc.regex).groupindex:
                return f"key 'log[{i}].regex': expected named groups ((?P<name>...)), got {lc.regex!r}"
        elif lc.regex:
            return f"key 'log[{i}].regex': only for format = \"regex\" (format is {lc.format!r})"
        if lc.name in names and logs[names[lc.name]].path != lc.path:
            return (f"key 'log[{i}].source': source {lc.name!r} is also log[{names[lc.name]}]'s; "
                    "give each [[log]] its own source")
        names[lc.name] = i
    seen: set[str] = set()
    for i, r in enumerate(rules):
        if not r.name:
            return f"key 'log_rule[{i}].name': expected a name"
        if r.name in seen:
            return f"key 'log_rule[{i}].name': rule {r.name!r} is given twice"
        seen.add(r.name)
        if not r.pattern:
            return f"key 'log_rule[{i}].pattern': expected a regex or a word"
        bad = regex_problem(r.pattern, f"log_rule[{i}].pattern")
        if bad:
            return bad
        if r.source and r.source not in names:
            return (f"key 'log_rule[{i}].source': no [[log]] source named {r.source!r} "
                    f"(sources: {', '.join(names) or 'none'})")
    return None
