"""The alerts file: rules, receivers, SMTP, routes and inhibitions, checked whole.

A file that does not parse or check is refused with one line naming the file,
the rule (or table) and the key; the root keeps the rules it had. ``clumon
rules check FILE`` runs the same checks offline.

Durations are seconds (a number) or text like ``30s``, ``5m``, ``2h``, ``1d``.
"""

from __future__ import annotations

import fnmatch
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clumon.proto.config import read_toml
from clumon.proto.liveness import STATES

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
KINDS = ("series", "state", "event", "absent")
AGGS = ("avg", "max", "min")
ROLES = ("agent", "aggregator", "root", "any")
SEVERITIES = ("info", "warning", "critical")
#: fields every summary template may name; a rule's labels and its series' labels add theirs
TEMPLATE_FIELDS = frozenset({"node", "value", "threshold", "alertname", "severity", "series", "state", "event",
                             "message", "path", "aggregator", "role", "for"})
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RulesError(ValueError):
    """A problem in the alerts file, with where it is in the message."""


@dataclass(frozen=True)
class Rule:
    """One alert rule; ``kind`` says which condition it has."""

    name: str
    kind: str
    nodes: str = "*"
    role: str = "agent"
    series: str = ""
    above: float | None = None
    below: float | None = None
    recover_above: float | None = None
    recover_below: float | None = None
    rate: bool = False
    window: float = 0.0
    agg: str = "avg"
    states: tuple[str, ...] = ()
    event: str = ""
    match: tuple[tuple[str, str], ...] = ()
    absent: str = ""
    for_: float = 0.0
    severity: str = "warning"
    labels: tuple[tuple[str, str], ...] = ()
    summary: str = ""
    #: an event alert resolves this long after the last matching event
    resolve_after: float = 300.0
    #: judge the value divided by the node's cores (its HELLO inventory): load per core
    per_core: bool = False

    @property
    def threshold(self) -> float | None:
        return self.above if self.above is not None else self.below

    def firing(self, value: float) -> bool:
        """Whether a value meets the firing condition."""
        return value > self.above if self.above is not None else value < self.below

    def recovered(self, value: float) -> bool:
        """Whether a value ends a firing alert: past the recovery threshold when the
        rule has one (hysteresis), else no longer meeting the condition."""
        if self.above is not None:
            return value < self.recover_below if self.recover_below is not None else value <= self.above
        return value > self.recover_above if self.recover_above is not None else value >= self.below


@dataclass(frozen=True)
class Receiver:
    name: str
    email: tuple[str, ...] = ()
    webhook: str = ""
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Smtp:
    host: str = "127.0.0.1"
    port: int = 25
    from_: str = "clumon@localhost"
    starttls: bool = False
    user: str = ""
    password_file: str = ""
    timeout: float = 10.0


@dataclass(frozen=True)
class Route:
    receiver: str
    match: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0

    def matches(self, labels: dict[str, str]) -> bool:
        return all(fnmatch.fnmatchcase(labels.get(k, ""), v) for k, v in self.match)


@dataclass(frozen=True)
class Inhibit:
    """A firing alert matching ``source`` mutes alerts matching ``target`` that share
    the ``equal`` labels (Alertmanager's inhibit rule)."""

    source: tuple[tuple[str, str], ...]
    target: tuple[tuple[str, str], ...]
    equal: tuple[str, ...] = ("node",)


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[Rule, ...] = ()
    receivers: dict[str, Receiver] = field(default_factory=dict)
    smtp: Smtp = Smtp()
    routes: tuple[Route, ...] = ()
    inhibit: tuple[Inhibit, ...] = ()
    #: seconds between evaluations of every rule
    evaluation_interval: float = 10.0
    #: link in notifications (the dashboard's address)
    external_url: str = ""
    #: fold the alerts of nodes behind an unreachable aggregator into its alert
    fold_subtrees: bool = True


# --- reading -----------------------------------------------------------------------


def duration(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise RulesError(f"{where}: expected a duration like 30s, 5m or 2h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise RulesError(f"{where}: expected a duration like 30s, 5m or 2h, got {value!r}")
    if not 0 <= seconds <= 366 * 86400 or seconds != seconds:
        raise RulesError(f"{where}: expected a duration from 0 to a year, got {value!r}")
    return seconds


class _Table:
    """One TOML table being read: each key taken once, unknown keys refused."""

    def __init__(self, data: Any, where: str, known: tuple[str, ...]):
        if not isinstance(data, dict):
            raise RulesError(f"{where}: expected a table, got {data!r}")
        for key in data:
            if key not in known:
                raise RulesError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        self.data, self.where = data, where

    def has(self, key: str) -> bool:
        return key in self.data

    def _bad(self, key: str, what: str) -> RulesError:
        return RulesError(f"{self.where}: key '{key}': expected {what}, got {self.data[key]!r}")

    def text(self, key: str, default: str | None = None, *, empty: bool = True) -> str:
        if key not in self.data:
            if default is None:
                raise RulesError(f"{self.where}: missing key '{key}'")
            return default
        v = self.data[key]
        if not isinstance(v, str) or (not empty and not v.strip()):
            raise self._bad(key, "a string" if empty else "a non-empty string")
        return v

    def number(self, key: str, default: float | None = None) -> float | None:
        if key not in self.data:
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise self._bad(key, "a finite number")
        return float(v)

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        if not isinstance(self.data[key], bool):
            raise self._bad(key, "true or false")
        return self.data[key]

    def duration(self, key: str, default: float) -> float:
        return duration(self.data[key], f"{self.where}: key '{key}'") if key in self.data else default

    def texts(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        if key not in self.data:
            return default
        v = self.data[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self._bad(key, "a list of non-empty strings")
        return tuple(v)

    def labels(self, key: str) -> tuple[tuple[str, str], ...]:
        if key not in self.data:
            return ()
        v = self.data[key]
        if not isinstance(v, dict) or not all(isinstance(k, str) and _LABEL_NAME.match(k) and isinstance(x, str)
                                              for k, x in v.items()):
            raise self._bad(key, "a table of label = \"text\"")
        return tuple(sorted(v.items()))

    def one_of(self, key: str, options: tuple[str, ...], default: str) -> str:
        v = self.text(key, default)
        if v not in options:
            raise self._bad(key, f"one of {', '.join(options)}")
        return v


_RULE_KEYS = ("name", "nodes", "role", "series", "above", "below", "recover_above", "recover_below", "rate",
              "window", "agg", "state", "event", "match", "absent", "for", "severity", "labels", "summary",
              "resolve_after", "per_core")


def _glob(t: _Table, key: str, default: str | None = None) -> str:
    v = t.text(key, default, empty=False)
    if v.count("[") != v.count("]"):  # fnmatch would read a lone [ as a literal: say it
        raise RulesError(f"{t.where}: key '{key}': unbalanced [ ] in the glob {v!r}")
    return v


def _rule(data: Any, index: int) -> Rule:
    name = data.get("name") if isinstance(data, dict) else None
    where = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{index + 1}"
    t = _Table(data, where, _RULE_KEYS)
    name = t.text("name", empty=False)
    kinds = [k for k in KINDS if t.has(k)]
    if len(kinds) != 1:
        raise RulesError(f"{where}: expected exactly one of the keys {', '.join(KINDS)}, got "
                         f"{', '.join(kinds) if kinds else 'none'}")
    kind = kinds[0]
    kw: dict[str, Any] = {"name": name, "kind": kind, "nodes": _glob(t, "nodes", "*"),
                          "role": t.one_of("role", ROLES, "agent"), "for_": t.duration("for", 0.0),
                          "severity": t.one_of("severity", SEVERITIES, "warning"), "labels": t.labels("labels"),
                          "summary": t.text("summary", "")}
    series_only = ("above", "below", "recover_above", "recover_below", "rate", "window", "agg", "per_core")
    for key in series_only:
        if t.has(key) and kind != "series" and not (kind == "absent" and key == "window"):
            raise RulesError(f"{where}: key '{key}' goes with 'series', not '{kind}'")
    if t.has("match") and kind != "event":
        raise RulesError(f"{where}: key 'match' goes with 'event', not '{kind}'")
    if t.has("resolve_after") and kind != "event":
        raise RulesError(f"{where}: key 'resolve_after' goes with 'event', not '{kind}'")
    if kind == "series":
        kw["series"] = _glob(t, "series")
        above, below = t.number("above"), t.number("below")
        if (above is None) == (below is None):
            raise RulesError(f"{where}: a series rule needs one of 'above' or 'below'")
        kw.update(above=above, below=below, recover_above=t.number("recover_above"),
                  recover_below=t.number("recover_below"), rate=t.flag("rate", False),
                  window=t.duration("window", 0.0), agg=t.one_of("agg", AGGS, "avg"),
                  per_core=t.flag("per_core", False))
        if above is not None and t.has("recover_above") or below is not None and t.has("recover_below"):
            raise RulesError(f"{where}: 'above' recovers with 'recover_below', 'below' with 'recover_above'")
        if above is not None and kw["recover_below"] is not None and kw["recover_below"] > above:
            raise RulesError(f"{where}: key 'recover_below': must not be above 'above' ({above:g})")
        if below is not None and kw["recover_above"] is not None and kw["recover_above"] < below:
            raise RulesError(f"{where}: key 'recover_above': must not be below 'below' ({below:g})")
        if kw["rate"] and kw["window"]:
            raise RulesError(f"{where}: 'rate' and 'window' do not go together (a window's aggregate of a rate "
                             "is not kept)")
        if kw["window"] and ("*" in kw["series"] or "?" in kw["series"] or "[" in kw["series"]):
            raise RulesError(f"{where}: key 'series': a 'window' rule names one series, not a glob")
        if kw["window"] and kw["window"] < 60:
            raise RulesError(f"{where}: key 'window': at least 1m (it reads the 1-minute rollups)")
    elif kind == "state":
        states = t.texts("state")
        bad = [s for s in states if s not in STATES]
        if not states or bad:
            raise RulesError(f"{where}: key 'state': expected node states among {', '.join(STATES)}, got {bad or states}")
        kw["states"] = states
    elif kind == "event":
        kw["event"] = _glob(t, "event")
        kw["match"] = t.labels("match")
        kw["resolve_after"] = t.duration("resolve_after", 300.0)
    else:
        kw["absent"] = t.text("absent", empty=False)
        kw["window"] = t.duration("window", 120.0)
    rule = Rule(**kw)
    _check_template(rule, where)
    return rule


def _check_template(rule: Rule, where: str) -> None:
    allowed = TEMPLATE_FIELDS | {k for k, _ in rule.labels} | set(re.findall(r"([A-Za-z_]\w*)=", rule.series))
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(rule.summary) if f is not None]
    except ValueError as exc:
        raise RulesError(f"{where}: key 'summary': {exc}") from None
    for f in names:
        base = re.split(r"[.\[!:]", f, maxsplit=1)[0]
        if base not in allowed:
            raise RulesError(f"{where}: key 'summary': unknown field {{{f}}} (known: {', '.join(sorted(allowed))})")


def _receiver(data: Any, index: int) -> Receiver:
    name = data.get("name") if isinstance(data, dict) else None
    where = f"receiver {name!r}" if isinstance(name, str) and name else f"receiver #{index + 1}"
    t = _Table(data, where, ("name", "email", "webhook", "command"))
    r = Receiver(t.text("name", empty=False), t.texts("email"), t.text("webhook", ""), t.texts("command"))
    if not (r.email or r.webhook or r.command):
        raise RulesError(f"{where}: give at least one of email, webhook, command")
    if r.webhook and not re.match(r"^https?://[^\s/]+", r.webhook):
        raise RulesError(f"{where}: key 'webhook': expected an http:// or https:// URL, got {r.webhook!r}")
    bad = [a for a in r.email if not re.match(r"^[^@\s]+@[^@\s]+$", a)]
    if bad:
        raise RulesError(f"{where}: key 'email': not an address: {bad[0]!r}")
    return r


def _route(data: Any, index: int, receivers: dict[str, Receiver]) -> Route:
    where = f"route #{index + 1}"
    t = _Table(data, where, ("match", "receiver", "group_by", "group_wait", "group_interval", "repeat_interval"))
    receiver = t.text("receiver", empty=False)
    if receiver not in receivers:
        raise RulesError(f"{where}: key 'receiver': no receiver named {receiver!r} "
                         f"(receivers: {', '.join(receivers) or 'none'})")
    return Route(receiver, t.labels("match"), t.texts("group_by", ("alertname",)), t.duration("group_wait", 30.0),
                 t.duration("group_interval", 300.0), t.duration("repeat_interval", 4 * 3600.0))


def _inhibit(data: Any, index: int) -> Inhibit:
    where = f"inhibit #{index + 1}"
    t = _Table(data, where, ("source_match", "target_match", "equal"))
    out = Inhibit(t.labels("source_match"), t.labels("target_match"), t.texts("equal", ("node",)))
    if not out.source or not out.target:
        raise RulesError(f"{where}: needs both 'source_match' and 'target_match'")
    return out


def _smtp(data: Any) -> Smtp:
    t = _Table(data, "smtp", ("host", "port", "from", "starttls", "user", "password_file", "timeout"))
    port = t.number("port", 25.0)
    if not (1 <= port <= 65535 and port == int(port)):
        raise RulesError(f"smtp: key 'port': expected a port from 1 to 65535, got {port!r}")
    s = Smtp(t.text("host", "127.0.0.1", empty=False), int(port), t.text("from", "clumon@localhost", empty=False),
             t.flag("starttls", False), t.text("user", ""), t.text("password_file", ""),
             t.duration("timeout", 10.0))
    if s.user and not s.password_file:
        raise RulesError("smtp: key 'user' needs 'password_file' (the password is never in this file)")
    return s


def parse(data: dict[str, Any]) -> AlertsConfig:
    """A parsed TOML document as an ``AlertsConfig``; raises ``RulesError``."""
    t = _Table(data, "alerts file", ("rule", "receiver", "smtp", "route", "inhibit", "evaluation_interval",
                                     "external_url", "fold_subtrees"))

    def tables(key: str) -> list:
        v = data.get(key, [])
        if not isinstance(v, list):
            raise RulesError(f"key '{key}': expected [[{key}]] tables, got {v!r}")
        return v

    rules = tuple(_rule(r, i) for i, r in enumerate(tables("rule")))
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise RulesError(f"rule {r.name!r}: the name is used twice (each rule needs its own)")
        seen.add(r.name)
    receivers: dict[str, Receiver] = {}
    for i, r in enumerate(tables("receiver")):
        rec = _receiver(r, i)
        if rec.name in receivers:
            raise RulesError(f"receiver {rec.name!r}: the name is used twice")
        receivers[rec.name] = rec
    routes = tuple(_route(r, i, receivers) for i, r in enumerate(tables("route")))
    if receivers and not routes:  # one receiver and no route: everything goes to it
        if len(receivers) == 1:
            routes = (Route(next(iter(receivers))),)
        else:
            raise RulesError("alerts file: several receivers and no [[route]]: say which alerts go where")
    interval = t.duration("evaluation_interval", 10.0)
    if interval < 0.1:
        raise RulesError("alerts file: key 'evaluation_interval': expected at least 0.1 s")
    return AlertsConfig(rules, receivers, _smtp(data["smtp"]) if "smtp" in data else Smtp(), routes,
                        tuple(_inhibit(x, i) for i, x in enumerate(tables("inhibit"))), interval,
                        t.text("external_url", ""), t.flag("fold_subtrees", True))


def load(path: str | Path) -> AlertsConfig:
    """Read and check an alerts file; every error names the file."""
    data = read_toml(path, RulesError)
    try:
        return parse(data)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None
