"""What gets told, to whom and when: silences, inhibitions, subtree folding,
routes and groups (Alertmanager's ``group_wait``, ``group_interval`` and
``repeat_interval``).

Each alert remembers the status it was last told as and when
(``Alert.notified``/``notified_at``, stored in SQL), so the timing of a group
comes from its alerts: a restarted root neither forgets nor repeats.

* A group (route, values of its ``group_by`` labels) is first told
  ``group_wait`` after its first alert fired; then, when an alert joined, fired
  or resolved, at most every ``group_interval``; and while anything still fires,
  again after ``repeat_interval``.
* Muted alerts (silenced, inhibited, or folded into an unreachable aggregator's
  alert) are not told; a silence that ends lets them be told at the next turn.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Iterable

from clumon.root.registry import Registry

from .lifecycle import FIRING, RESOLVED, Alert
from .rules import AlertsConfig, Route

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class SilenceError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` (Alertmanager's)."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "Matcher":
        m = _MATCHER.match(text)
        if not m:
            raise SilenceError(f"matcher {text!r}: expected label=value, label!=value, label=~regex or label!~regex")
        name, op, value = m.groups()
        value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise SilenceError(f"matcher {text!r}: bad regex: {exc}") from None
        return cls(name, op, value)

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit

    def text(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts: float
    ends: float
    created_by: str
    reason: str

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def as_dict(self) -> dict:
        return {"id": self.id, "matchers": [m.text() for m in self.matchers], "starts": self.starts,
                "ends": self.ends, "created_by": self.created_by, "reason": self.reason}


@dataclass
class Notice:
    """One notification of one group to one receiver."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    status: str  # firing when anything in it fires, else resolved
    alerts: list[dict]
    #: the alerts told (their fingerprints), and as what
    told: dict[str, str] = field(default_factory=dict)
    #: when it was decided, and each alert's (notified, notified_at) before it: a
    #: notice that was never delivered is taken back with them
    at: float = 0.0
    before: dict[str, tuple] = field(default_factory=dict)
    #: channels of its receiver that delivered it
    delivered: int = 0


def _labels_match(pairs: Iterable[tuple[str, str]], labels: dict[str, str]) -> bool:
    return all(fnmatch.fnmatchcase(labels.get(k, ""), v) for k, v in pairs)


def muted(alerts: list[Alert], cfg: AlertsConfig, silences: list[Silence], registry: Registry,
          now: float) -> dict[str, str]:
    """fingerprint -> why it is not told now (``silenced:ID``, ``inhibited``, ``folded:AGG``)."""
    out: dict[str, str] = {}
    firing = [a for a in alerts if a.state == FIRING]
    active = [s for s in silences if s.active(now)]
    gone_aggs: dict[str, str] = {}
    if cfg.fold_subtrees:  # an aggregator gone dark with an alert of its own (pending or firing)
        for a in alerts:
            if a.state not in ("pending", FIRING):
                continue
            node = registry.nodes.get(a.labels.get("node", ""))
            if node is not None and node.role == "aggregator" and node.state in ("down", "unreachable"):
                gone_aggs[node.name] = a.fingerprint
    for a in alerts:
        s = next((s for s in active if s.matches(a.labels)), None)
        if s is not None:
            out[a.fingerprint] = f"silenced:{s.id}"
            continue
        if gone_aggs:
            node = registry.nodes.get(a.labels.get("node", ""))
            if node is not None and node.name not in gone_aggs:
                above = next((agg for agg in node.path.split("/") if agg in gone_aggs), None) if node.path else None
                if above is not None:
                    out[a.fingerprint] = f"folded:{above}"
                    continue
        for rule in cfg.inhibit:
            if not _labels_match(rule.target, a.labels):
                continue
            if any(src is not a and _labels_match(rule.source, src.labels)
                   and all(src.labels.get(k) == a.labels.get(k) for k in rule.equal) for src in firing):
                out[a.fingerprint] = "inhibited"
                break
    return out


def route_of(cfg: AlertsConfig, labels: dict[str, str]) -> tuple[int, Route] | None:
    for i, r in enumerate(cfg.routes):
        if r.matches(labels):
            return i, r
    return None


def due(alerts: list[Alert], cfg: AlertsConfig, mute: dict[str, str], now: float,
        folded_counts: dict[str, int] | None = None, external_url: str = "") -> list[Notice]:
    """The notifications to send now."""
    groups: dict[tuple, list[Alert]] = {}
    routes: dict[tuple, Route] = {}
    for a in alerts:
        if a.fingerprint in mute:
            continue
        if not (a.state == FIRING or (a.state == RESOLVED and a.notified == FIRING)):
            continue
        found = route_of(cfg, a.labels)
        if found is None:
            continue
        i, route = found
        key = (i, tuple(a.labels.get(k, "") for k in route.group_by))
        groups.setdefault(key, []).append(a)
        routes[key] = route
    out = []
    for key, members in groups.items():
        route = routes[key]
        told_at = [a.notified_at for a in members if a.notified_at is not None and a.notified is not None]
        changed = any(a.notified != a.state for a in members)
        firing = [a for a in members if a.state == FIRING]
        if not told_at:
            first = min((a.fired_at or a.started) for a in members)
            send = now - first >= route.group_wait
        else:
            last = max(told_at)
            send = (changed and now - last >= route.group_interval) or \
                   (bool(firing) and now - last >= route.repeat_interval)
        if not send:
            continue
        group_labels = dict(zip(route.group_by, key[1]))
        out.append(Notice(route.receiver, f"{{}}:{{{_kv(group_labels)}}}", group_labels,
                          FIRING if firing else RESOLVED,
                          [_payload(a, (folded_counts or {}).get(a.fingerprint, 0), external_url) for a in members],
                          {a.fingerprint: a.state for a in members}))
    return out


def _kv(labels: dict[str, str]) -> str:
    return ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def _iso(ts: float | None) -> str:
    import datetime as dt
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _payload(a: Alert, folded: int, external_url: str) -> dict:
    """One alert as Alertmanager's webhook (version 4) shows it."""
    annotations = dict(a.annotations)
    if folded:
        annotations["folded"] = f"{folded} alerts of nodes behind {a.labels.get('node', '')} are folded into this one"
    if a.value is not None:
        annotations.setdefault("value", f"{a.value:.6g}")
    return {"status": a.state if a.state in (FIRING, RESOLVED) else FIRING, "labels": dict(a.labels),
            "annotations": annotations, "startsAt": _iso(a.fired_at or a.started),
            "endsAt": _iso(a.resolved_at if a.state == RESOLVED else None),
            "generatorURL": f"{external_url.rstrip('/')}/alerts/{a.fingerprint}" if external_url else "",
            "fingerprint": a.fingerprint}


def folded_counts(mute: dict[str, str], alerts: dict[str, Alert]) -> dict[str, int]:
    """How many alerts are folded into each aggregator's alert (by its fingerprint)."""
    by_agg: dict[str, int] = {}
    for why in mute.values():
        if why.startswith("folded:"):
            agg = why.split(":", 1)[1]
            by_agg[agg] = by_agg.get(agg, 0) + 1
    out = {}
    for a in alerts.values():
        n = by_agg.get(a.labels.get("node", ""))
        if n and a.state == FIRING:
            out[a.fingerprint] = n
    return out
