"""Formats of log lines: what each one parses into fields.

``plain`` gives no fields; ``syslog`` reads RFC 3164 (``<13>Nov 14 22:13:01 host
tag[pid]: msg``) and RFC 5424 (``<13>1 2023-11-14T22:13:01Z host app pid msgid - msg``);
``json`` a JSON object a line; ``regex`` the named groups of the configured regex.
A line that does not parse keeps its text and gets no fields: nothing is dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_RFC3164 = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<app>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)", re.S)
_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[.*?\])+) ?(?P<msg>.*)", re.S)

Parser = Callable[[str], "dict[str, Any] | None"]


def _syslog(line: str) -> dict[str, Any] | None:
    m = _RFC5424.match(line) or _RFC3164.match(line)
    if m is None:
        return None
    out = {k: v for k, v in m.groupdict().items() if v is not None and v != "-"}
    pri = out.pop("pri", None)
    if pri is not None and int(pri) < 192:
        out["facility"] = int(pri) >> 3
        out["severity"] = _SEVERITIES[int(pri) & 7]
    return out


def _json(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    # nested values go as JSON text: fields are one level a line
    return {str(k): (v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v))
            for k, v in obj.items()}


def _regex(pattern: str) -> Parser:
    rx = re.compile(pattern)

    def parse(line: str) -> dict[str, Any] | None:
        m = rx.search(line)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}
    return parse


def parser(fmt: str, regex: str = "") -> Parser | None:
    """The parser of a format (None for plain lines, which have no fields)."""
    if fmt == "syslog":
        return _syslog
    if fmt == "json":
        return _json
    if fmt == "regex":
        return _regex(regex)
    return None
