"""Which rule instances hold now: one ``Hit`` per (rule, node[, series]) whose
condition is met, computed from the live view (registry, latest values), the
rollups (``window`` rules) and the events the root stored.

Pure of I/O except the rollup reads, which the caller does first
(``window_values``) in an executor and hands in.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import sqlalchemy as sa

from clumon.proto.seriesname import parse
from clumon.proto.tree import LatestCache
from clumon.root.registry import NodeState, Registry

from .rules import Rule

_GLOB = set("*?[")
#: node states in which a node's values are fresh enough to judge
LIVE = ("up", "suspect", "restarted")


@dataclass(slots=True)
class Hit:
    """One instance of a rule: its alert's labels and fingerprint, its value now
    (None: no value to judge), whether the firing condition holds and whether the
    recovery condition holds."""

    node: str
    labels: dict[str, str]
    fingerprint: str
    value: float | None
    fires: bool
    recovers: bool
    context: dict = field(default_factory=dict)


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of an alert's labels (16 hex digits, as Alertmanager shows them)."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_glob(text: str) -> bool:
    return not _GLOB.isdisjoint(text)


class Selector:
    """Which nodes a rule applies to, remembered per (rule, node, path, role)."""

    def __init__(self) -> None:
        self._memo: dict[tuple, bool] = {}

    def selects(self, rule: Rule, n: NodeState) -> bool:
        key = (rule.name, rule.nodes, rule.role, n.name, n.path, n.role)
        got = self._memo.get(key)
        if got is None:
            if len(self._memo) > 1_000_000:
                self._memo.clear()
            full = f"{n.path}/{n.name}" if n.path else n.name
            got = (rule.role == "any" or n.role == rule.role) and (
                fnmatch.fnmatchcase(n.name, rule.nodes) or fnmatch.fnmatchcase(full, rule.nodes))
            self._memo[key] = got
        return got


class SeriesIndex:
    """Positions of the series a pattern names in a node's dictionary, remembered
    per dictionary (a node's names tuple changes only with a new HELLO)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int], tuple[tuple[str, ...], list[int]]] = {}

    def positions(self, pattern: str, names: tuple[str, ...]) -> list[int]:
        key = (pattern, id(names))
        got = self._memo.get(key)
        if got is not None and got[0] is names:
            return got[1]
        if len(self._memo) > 200_000:
            self._memo.clear()
        if is_glob(pattern):
            found = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
        else:
            found = [i for i, n in enumerate(names) if n == pattern]
        self._memo[key] = (names, found)
        return found


class Conditions:
    """Evaluates rules against the live view; keeps what rates and events need
    between evaluations."""

    def __init__(self, registry: Registry, cache: LatestCache, is_open: Callable[[str], bool] = lambda fp: False):
        self.registry = registry
        self.cache = cache
        #: whether an alert (by fingerprint) is pending or firing: only those and the
        #: instances that fire are handed on, the rest cost one comparison
        self.is_open = is_open
        self.select = Selector()
        self.index = SeriesIndex()
        #: (rule, node, series) -> (labels, fingerprint) of its alert
        self._ids: dict[tuple[str, str, str], tuple[dict[str, str], str]] = {}
        #: (rule, node, series) -> (value, ts) of the previous sample, for rates
        self._last: dict[tuple[str, str, str], tuple[float, float, float | None]] = {}
        #: rule -> fingerprint-ish key (node, labels) -> (ts, node, labels, context) of the newest matching event
        self.events: dict[str, dict[tuple, tuple[float, str, dict, dict]]] = {}
        #: the nodes the last ``hits`` selected but could not judge (values not fresh,
        #: not yet read): their open alerts keep their state. Every other open alert
        #: of the rule that no hit names has lost its instance (its series is gone,
        #: its labels changed with a reload, its node left the rule or the tree).
        self.unjudged: set[str] = set()

    # --- events -----------------------------------------------------------------------

    def saw_events(self, rules: Iterable[Rule], events: Iterable) -> None:
        """Remember stored events that match event rules (``EventRow``-like: ts,
        subject, type, message, attrs)."""
        event_rules = [r for r in rules if r.kind == "event"]
        if not event_rules:
            return
        for e in events:
            for r in event_rules:
                if not fnmatch.fnmatchcase(e.type, r.event) or e.type == "alert" and r.event != "alert":
                    continue  # the engine's own events feed a rule only when it names them
                attrs = e.attrs if isinstance(e.attrs, dict) else {}
                if not all(k in attrs and fnmatch.fnmatchcase(str(attrs[k]), v) for k, v in r.match):
                    continue
                n = self.registry.nodes.get(e.subject)
                if n is not None and not self.select.selects(r, n) or n is None and not fnmatch.fnmatchcase(
                        e.subject, r.nodes):
                    continue
                labels = {"node": e.subject}
                mine = self.events.setdefault(r.name, {})
                old = mine.get((e.subject,))
                if old is None or old[0] <= e.ts:
                    mine[(e.subject,)] = (e.ts, e.subject, labels, {"event": e.type, "message": e.message})

    # --- evaluation ---------------------------------------------------------------------

    def _id(self, rule: Rule, node: str, series: str = "") -> tuple[dict[str, str], str]:
        key = (rule.name, node, series)
        got = self._ids.get(key)
        if got is None:
            labels = {**dict(rule.labels), "node": node}
            if "{" in series:
                parsed = parse(series)
                if parsed is not None:
                    labels.update({k: x for k, x in parsed[1].items() if k not in ("node", "alertname", "severity")})
            labels.update(alertname=rule.name, severity=rule.severity)
            if len(self._ids) > 2_000_000:
                self._ids.clear()
            got = self._ids[key] = (labels, fingerprint(labels))
        return got

    def _hit(self, out: list, rule: Rule, node: str, series: str, value: float | None, fires: bool,
             recovers: bool, context: dict) -> None:
        labels, fp = self._id(rule, node, series)
        if fires or self.is_open(fp):
            out.append(Hit(node, labels, fp, value, fires, recovers, context))

    def hits(self, rule: Rule, now: float, windows: dict[str, tuple[float, float, float, int]] | None = None
             ) -> list[Hit]:
        """The instances of ``rule`` that can be judged now (``windows``: the rollup
        figures of a ``window`` rule, None when they could not be read); the nodes
        selected but not judged are left in ``unjudged``."""
        self.unjudged = unjudged = set()
        if rule.kind == "event":
            return self._event_hits(rule, now)
        out: list[Hit] = []
        for n in self.registry.nodes.values():
            if not self.select.selects(rule, n):
                continue
            if rule.kind == "state":
                hit = n.state in rule.states
                self._hit(out, rule, n.name, "", None, hit, not hit, {"state": n.state})
            elif rule.kind == "absent":
                if not self._absent(rule, n, now, out):
                    unjudged.add(n.name)
            elif rule.window:
                if windows is None or n.state not in LIVE:
                    unjudged.add(n.name)
                    continue
                got = windows.get(n.name)
                if got is None:
                    continue  # nothing in the window: no instance (an ``absent`` rule's business)
                value = _aggregate(rule.agg, got)
                if rule.per_core:
                    cores = _cores(n)
                    if cores is None:
                        unjudged.add(n.name)
                        continue
                    value /= cores
                self._hit(out, rule, n.name, "", value, rule.firing(value), rule.recovered(value),
                          {"series": rule.series})
            elif not self._series(rule, n, out):
                unjudged.add(n.name)
        return out

    def _series(self, rule: Rule, n: NodeState, out: list[Hit]) -> bool:
        """Hits of one node; False when its values cannot be judged now."""
        nv = self.cache.nodes.get(n.name)
        if nv is None or n.state not in LIVE:
            return False
        values, stamps = nv.values, nv.stamps
        cores = _cores(n) if rule.per_core else 1
        if cores is None:
            return False
        judged = True
        for i in self.index.positions(rule.series, nv.names):
            ts = float(stamps[i])
            v = float(values[i])
            if not ts or math.isnan(v):
                judged = False  # a series with no value this time
                continue
            name = nv.names[i]
            if rule.rate:
                v = self._rate(rule.name, n.name, name, v, ts)
                if v is None:
                    judged = False
                    continue
            v /= cores
            fires = v > rule.above if rule.above is not None else v < rule.below
            if fires:
                self._hit(out, rule, n.name, name, v, True, False, {"series": name})
            else:
                labels, fp = self._id(rule, n.name, name)
                if self.is_open(fp):
                    out.append(Hit(n.name, labels, fp, v, False, rule.recovered(v), {"series": name}))
        return judged

    def _rate(self, rule: str, node: str, name: str, v: float, ts: float) -> float | None:
        """Per second since the previous sample of a counter (None until two, or
        after a reset: a counter that went down started again)."""
        key = (rule, node, name)
        prev = self._last.get(key)
        if prev is not None and prev[1] == ts:
            return prev[2]  # no new sample since: the rate stands
        rate = None
        if prev is not None and ts > prev[1] and v >= prev[0]:
            rate = (v - prev[0]) / (ts - prev[1])
        if len(self._last) > 2_000_000:
            self._last.clear()
        self._last[key] = (v, ts, rate)
        return rate

    def _absent(self, rule: Rule, n: NodeState, now: float, out: list[Hit]) -> bool:
        """Hit of one node; False when it cannot be judged now."""
        if n.state != "up":
            return False  # a down node is the state rules' business
        nv = self.cache.nodes.get(n.name)
        if nv is None:
            return False
        idx = self.index.positions(rule.absent, nv.names)
        if not idx:
            return True  # never had it: not a series that stopped
        newest = max(float(nv.stamps[i]) for i in idx)
        if not newest:
            return False
        age = now - newest
        hit = age > rule.window
        self._hit(out, rule, n.name, "", age, hit, not hit, {"series": rule.absent})
        return True

    def _event_hits(self, rule: Rule, now: float) -> list[Hit]:
        out = []
        mine = self.events.get(rule.name, {})
        for key, (ts, node, labels, context) in list(mine.items()):
            hit = now - ts < rule.resolve_after
            self._hit(out, rule, node, "", None, hit, not hit, dict(context))
            if not hit:
                del mine[key]  # told once as not holding: enough to resolve it
        return out

    def forget_rules(self, names: set[str]) -> None:
        """Drop what belongs to rules that are gone (after a reload)."""
        for key in [k for k in self._last if k[0] not in names]:
            del self._last[key]
        for name in [k for k in self.events if k not in names]:
            del self.events[name]
        self._ids.clear()  # a rule's labels or severity may have changed


def _cores(n: NodeState) -> int | None:
    cores = n.inventory.get("cores") if isinstance(n.inventory, dict) else None
    return cores if isinstance(cores, int) and not isinstance(cores, bool) and cores > 0 else None


def _aggregate(agg: str, got: tuple[float, float, float, int]) -> float:
    lo, hi, total, count = got
    return lo if agg == "min" else hi if agg == "max" else total / count


def window_values(conn: sa.Connection, series: str, since: float) -> dict[str, tuple[float, float, float, int]]:
    """Per node: min, max, sum and count of ``series`` over the 1-minute rollups
    from ``since`` (one query for every node)."""
    from clumon.root.storage import schema as S
    k, r = S.rollup_keys, S.rollups["1m"]
    keys = dict(conn.execute(sa.select(k.c.key, k.c.entity).where(k.c.scope == "node", k.c.series == series)).all())
    if not keys:
        return {}
    q = (sa.select(r.c.key, sa.func.min(r.c.min), sa.func.max(r.c.max), sa.func.sum(r.c.sum + r.c.sum_c),
                   sa.func.sum(r.c.count))
         .where(r.c.key.in_(list(keys)), r.c.bucket >= since).group_by(r.c.key))
    return {keys[key]: (float(lo), float(hi), float(total), int(count))
            for key, lo, hi, total, count in conn.execute(q) if count}
