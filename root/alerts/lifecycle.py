"""Alerts and their lives: pending -> firing -> resolved, one per (rule, labels).

An alert is pending while its condition holds for less than the rule's
``for``; firing after that; resolved when the rule's recovery condition holds,
or when its instance is gone: the node left the view or the rule, the series
left the node, a reload changed the rule's labels or severity (the alert with
the new labels is another one). An instance that cannot be judged this time
(no value yet, a node whose values are not fresh) keeps its state: a root that
just restarted does not resolve what it has not seen yet. An event rule's
alert that no event renews ends ``resolve_after`` after it began.

An alert that fires again before its resolution was told continues the told
one (the receivers heard "firing" and hear nothing until it resolves for good);
the row of the earlier one is closed as ``superseded``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable

from .conditions import Hit, fingerprint  # noqa: F401 - fingerprint is part of this face
from .rules import Rule

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
#: ``notified`` of an alert whose resolution was never told because it fired again
SUPERSEDED = "superseded"
#: ``notified`` of a resolved alert that no route takes any more (after a reload)
UNROUTABLE = "unroutable"


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule: str
    labels: dict[str, str]
    state: str
    #: when the condition was first seen holding (the row's key with the fingerprint)
    started: float
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    #: the status last sent ("firing", "resolved") and when
    notified: str | None = None
    notified_at: float | None = None
    notifications: int = 0
    #: changed since it was last written
    dirty: bool = True

    def as_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "rule": self.rule, "labels": dict(self.labels),
                "state": self.state, "started": self.started, "fired_at": self.fired_at,
                "resolved_at": self.resolved_at, "value": self.value, "annotations": dict(self.annotations),
                "notified": self.notified, "notified_at": self.notified_at, "notifications": self.notifications}


class _Fields(dict):
    """Template fields: unknown ones render as themselves (checked at load already)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def summary(rule: Rule, hit: Hit, labels: dict[str, str]) -> str:
    value = "" if hit.value is None else f"{hit.value:.6g}"
    threshold = "" if rule.threshold is None else f"{rule.threshold:g}"
    fields = _Fields({**labels, **hit.context, "value": value, "threshold": threshold, "alertname": rule.name,
                      "severity": rule.severity, "for": f"{rule.for_:g}s"})
    text = rule.summary or _default_summary(rule)
    try:
        return string.Formatter().vformat(text, (), fields)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return text


def _default_summary(rule: Rule) -> str:
    if rule.kind == "series":
        op = ">" if rule.above is not None else "<"
        return "{series} on {node} is {value} (" + op + " {threshold})"
    if rule.kind == "state":
        return "{node} is {state}"
    if rule.kind == "absent":
        return "{series} from {node} stopped arriving {value} s ago"
    return "{event} on {node}: {message}"


Transition = tuple[Alert, str, str]  # alert, old state, new state


class Book:
    """The alerts open now (pending, firing, and resolved ones still to be told)."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        #: alerts replaced by a newer one of the same fingerprint, still to be written
        self.retired: list[Alert] = []

    def is_open(self, fp: str) -> bool:
        a = self.alerts.get(fp)
        return a is not None and a.state in (PENDING, FIRING)

    def load(self, alerts: list[Alert]) -> None:
        """Alerts read back at start; of two with one fingerprint the newer stays and
        the older is closed."""
        for a in sorted(alerts, key=lambda a: a.started):
            a.dirty = False
            old = self.alerts.get(a.fingerprint)
            if old is not None:
                self._retire(old, a.started)
            self.alerts[a.fingerprint] = a

    def _retire(self, old: Alert, now: float) -> None:
        if old.state != RESOLVED:
            old.state, old.resolved_at = RESOLVED, now
        if old.notified == FIRING:
            old.notified = SUPERSEDED
        old.dirty = True
        self.retired.append(old)

    def apply(self, rule: Rule, hits: list[Hit], now: float, unjudged: set[str] | Callable[[str], bool] = frozenset()
              ) -> list[Transition]:
        """One evaluation of one rule (``unjudged``: the nodes whose open alerts keep
        their state this time, see ``Conditions.unjudged``); returns the state changes."""
        changes: list[Transition] = []
        seen: set[str] = set()
        for hit in hits:
            labels, fp = hit.labels, hit.fingerprint
            seen.add(fp)
            a = self.alerts.get(fp)
            open_ = a is not None and a.state in (PENDING, FIRING)
            holds = hit.fires or (open_ and not hit.recovers)
            if not holds:
                if open_:
                    changes.append(self._end(a, now, hit.value))
                continue
            if not open_:
                old, a = a, Alert(fp, rule.name, dict(labels), PENDING, now, value=hit.value)
                if old is not None:
                    if old.notified == FIRING:  # its resolution untold: this one goes on from it
                        a.notified, a.notified_at, a.notifications = FIRING, old.notified_at, old.notifications
                    self._retire(old, now)
                self.alerts[fp] = a
                changes.append((a, "", PENDING))
            if a.value != hit.value:
                a.value, a.dirty = hit.value, True
            text = summary(rule, hit, labels)
            if a.annotations.get("summary") != text:
                a.annotations, a.dirty = {"summary": text}, True
            if a.state == PENDING and now - a.started >= rule.for_:
                a.state, a.fired_at, a.dirty = FIRING, now, True
                changes.append((a, PENDING, FIRING))
        keep = unjudged if callable(unjudged) else unjudged.__contains__
        for fp, a in list(self.alerts.items()):
            if a.rule != rule.name or fp in seen or a.state not in (PENDING, FIRING):
                continue
            if rule.kind == "event":
                if now - (a.fired_at or a.started) >= rule.resolve_after:
                    changes.append(self._end(a, now, a.value))
            elif not keep(a.labels.get("node", "")):
                changes.append(self._end(a, now, a.value))  # its instance is gone
        return changes

    def _end(self, a: Alert, now: float, value: float | None) -> Transition:
        old = a.state
        a.state = RESOLVED  # one that never fired has nothing to tell: dropped once written
        a.resolved_at, a.value, a.dirty = now, value, True
        return (a, old, RESOLVED)

    def drop_rules(self, names: set[str], now: float) -> list[Transition]:
        """Resolve the open alerts of rules that are no longer in the file."""
        return [self._end(a, now, a.value) for a in self.alerts.values()
                if a.rule not in names and a.state in (PENDING, FIRING)]

    def settled(self, inflight: dict[str, int] | set[str] = frozenset()) -> list[Alert]:
        """Resolved alerts with nothing more to tell (nor being told: ``inflight``):
        written, then forgotten here."""
        done = [a for a in self.alerts.values()
                if a.state == RESOLVED and a.notified != FIRING and not a.dirty and a.fingerprint not in inflight]
        for a in done:
            del self.alerts[a.fingerprint]
        return done

    def counts(self) -> dict[str, int]:
        out = {PENDING: 0, FIRING: 0}
        for a in self.alerts.values():
            if a.state in out:
                out[a.state] += 1
        return out
