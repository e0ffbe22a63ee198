"""Filters at the source: masks, then change suppression (pure, no I/O).

The rules and mask sets are ``clumon.proto.maskrules`` (shared with the root).
A series is judged by the lowest-numbered rule whose glob matches it; a series no
rule matches passes (as if ``U``). What passes is then sent only when it differs
from the value last sent by more than ``min_change`` (relative, with
``min_change_abs`` as the floor near zero) or when ``max_silence`` seconds have
passed since it was last sent (less ``SILENCE_SLACK_S``, 50 ms, so a source read every
``max_silence`` seconds is sent every read). ``max_silence = 0`` sends every value
every time.
"""

from __future__ import annotations

import math
from itertools import compress
from operator import le, not_, sub
from typing import Iterable, Mapping, Sequence

from clumon.proto.maskrules import DROP, UNBOUNDED, MaskSet, Rule

#: ``max_silence`` counts as passed this much early: a source read every
#: ``max_silence`` seconds is read a few ms early or late (timer slack, a busy
#: loop), and without this half its reads would wait a whole interval more.
SILENCE_SLACK_S = 0.05


#: bounds of a series that a ``drop`` rule matches: nothing passes
_NEVER = (math.inf, -math.inf)
#: a position of a ``_Columns`` whose series was never sent, or was masked since
_UNSENT = object()
#: layouts held at once; past this many (series sets that churn, as in tests feeding
#: dicts) they are all written back and dropped, and rebuilt as they come
_MAX_LAYOUTS = 1024


class _Columns:
    """Masks and change-suppression state of one layout (the names tuple a source
    hands out read after read), position by position.

    While it exists it holds what was last sent for its names (``Filter._sent``
    gets it back when it is dropped), so the common read is judged by a few
    C-level passes: ``|value - last sent| <= threshold`` for every position at
    once, the threshold worked out when the value was sent. Python then touches
    only the values that are sent (about one in six on an idle node). A read with a
    missing value, a value silent for ``max_silence``, or a rule in force for the
    layout is judged value by value (``Filter._judge_each``).
    """

    __slots__ = ("names", "bounds", "bounded", "counter", "last", "when", "thr", "oldest", "gaps")

    def __init__(self, names: tuple[str, ...], masks: MaskSet, sent: Mapping[str, tuple[float | None, float]]) -> None:
        self.names = names
        #: what each value must lie in to pass: None anything, _NEVER nothing
        self.bounds = [_bounds(masks.rule_for(n)) for n in names]
        self.bounded = any(b is not None for b in self.bounds)
        self.counter = [_is_counter(n) for n in names]
        self.last: list = []
        self.when: list[float] = []
        for name in names:
            got = sent.get(name)
            self.last.append(_UNSENT if got is None else got[0])
            self.when.append(-math.inf if got is None else got[1])
        rel, floor = masks.min_change, masks.min_change_abs
        self.thr = [floor if c or not isinstance(v, (int, float)) else max(rel * abs(v), floor)
                    for v, c in zip(self.last, self.counter)]
        #: when the value sent longest ago was sent (-inf while one is unsent)
        self.oldest = min(self.when, default=math.inf)
        #: a missing value was the last sent of a series (swap's ratio with no swap):
        #: judged value by value until it is not
        self.gaps = None in self.last

    def write_back(self, sent: dict[str, tuple[float | None, float]]) -> None:
        """Put what this layout last sent into ``sent``, by name."""
        for name, v, t in zip(self.names, self.last, self.when):
            if v is _UNSENT:
                sent.pop(name, None)
            else:
                sent[name] = (v, t)


def _bounds(rule: Rule | None) -> tuple[float, float] | None:
    if rule is None or rule.kind == UNBOUNDED:
        return None
    if rule.kind == DROP:
        return _NEVER
    return (rule.lower, rule.upper)


class Filter:
    """Applies a ``MaskSet`` to readings and remembers what was last sent.

    State lives in a ``_Columns`` per layout; ``_sent`` (name -> value last sent,
    when) keeps it for names no layout holds, so a layout that changes (a new
    interface) or a series read by two layouts (tests) carries on where it was.
    Not thread-safe; the agent calls it from the event loop only.
    """

    def __init__(self, masks: MaskSet) -> None:
        self.masks = masks
        self._sent: dict[str, tuple[float | None, float]] = {}
        #: id of a layout's names tuple (held by its _Columns, so the id stays its
        #: own) -> its columns
        self._layouts: dict[int, _Columns] = {}
        #: name -> the layout holding its state (one at most)
        self._owner: dict[str, int] = {}
        self.passed = 0
        self.masked = 0
        self.suppressed = 0

    def replace(self, masks: MaskSet) -> None:
        """Put a new mask set in force; every value that passes it is sent afresh."""
        self.masks = masks
        self.resend_all()

    def resend_all(self) -> None:
        """Forget what was sent: the next ``apply`` sends everything that passes."""
        self._sent.clear()
        self._layouts.clear()
        self._owner.clear()

    def apply(self, values: Mapping[str, float | None], now: float) -> dict[str, float | None]:
        """The subset of ``values`` to send now; ``now`` is any monotonic clock."""
        names, passed = self.apply_columns([(tuple(values), list(values.values()))], now)
        return dict(zip(names, passed))

    def apply_columns(self, parts: Iterable[tuple[Sequence[str], Sequence[float | None]]],
                      now: float) -> tuple[list[str], list[float | None]]:
        """``apply`` for reads kept as (names, values) columns: the names and values
        to send now, in the order read.

        The hot path of the agent (every value of every read): see ``_Columns``.
        """
        m = self.masks
        rel, floor, silence = m.min_change, m.min_change_abs, m.max_silence - SILENCE_SLACK_S
        out_names: list[str] = []
        out_values: list[float | None] = []
        layouts = self._layouts
        suppressed = 0
        for names, values in parts:
            # by identity: a collector hands out the same names tuple read after read
            # (hashing it would walk every name); another object with the same names
            # takes their state over in _columns_for
            cols = layouts.get(id(names))
            if cols is None or cols.names is not names:
                cols = self._columns_for(names if type(names) is tuple else tuple(names))
            if cols.bounded or cols.gaps or now - cols.oldest >= silence:
                self._judge_each(cols, values, now, out_names, out_values)
                continue
            try:
                kept = list(map(le, map(abs, map(sub, values, cols.last)), cols.thr))
            except TypeError:  # a value missing now or when last sent
                self._judge_each(cols, values, now, out_names, out_values)
                continue
            if False not in kept:
                suppressed += len(kept)
                continue
            last, when, thr, counter = cols.last, cols.when, cols.thr, cols.counter
            n = len(out_names)
            for i in compress(range(len(kept)), map(not_, kept)):
                v = values[i]
                last[i] = v
                when[i] = now
                thr[i] = floor if counter[i] else max(rel * (v if v >= 0 else -v), floor)
                out_names.append(names[i])
                out_values.append(v)
            cols.oldest = min(when)
            suppressed += len(kept) - (len(out_names) - n)
        self.passed += len(out_names)
        self.suppressed += suppressed
        return out_names, out_values

    def _judge_each(self, cols: _Columns, values: Sequence[float | None], now: float,
                    out_names: list[str], out_values: list[float | None]) -> None:
        """Judge a read value by value: rules, missing values, max_silence."""
        m = self.masks
        rel, floor, silence = m.min_change, m.min_change_abs, m.max_silence - SILENCE_SLACK_S
        last, when, thr = cols.last, cols.when, cols.thr
        masked = suppressed = 0
        for i, (name, v, b, counter) in enumerate(zip(cols.names, values, cols.bounds, cols.counter)):
            if b is not None and (b is _NEVER or v is None or not b[0] <= v <= b[1]):
                # forget it: when it passes again it is sent at once, whatever it was before
                last[i] = _UNSENT
                when[i] = -math.inf
                masked += 1
                continue
            old = last[i]
            if old is not _UNSENT and now - when[i] < silence:
                if old is None or v is None:
                    if old is v:
                        suppressed += 1
                        continue
                else:
                    d = v - old
                    if (d if d >= 0 else -d) <= thr[i]:
                        suppressed += 1
                        continue
            last[i] = v
            when[i] = now
            thr[i] = floor if counter or v is None else max(rel * (v if v >= 0 else -v), floor)
            out_names.append(name)
            out_values.append(v)
        cols.oldest = min(when, default=math.inf)
        cols.gaps = None in last
        self.masked += masked
        self.suppressed += suppressed

    def _columns_for(self, names: tuple[str, ...]) -> _Columns:
        """The columns of a layout met for the first time; they take over the state
        of their names from other layouts."""
        if len(self._layouts) >= _MAX_LAYOUTS:
            self._release(list(self._owner))
            self._layouts.clear()
        self._release(names)
        cols = self._layouts[id(names)] = _Columns(names, self.masks, self._sent)
        self._owner.update(dict.fromkeys(names, id(names)))
        return cols

    def _release(self, names: Iterable[str]) -> None:
        """Drop the layouts that hold any of ``names``, writing their state back to ``_sent``."""
        layouts, owner = self._layouts, self._owner
        for name in names:
            layout = owner.pop(name, None)
            cols = layouts.pop(layout, None) if layout is not None else None
            if cols is not None:
                cols.write_back(self._sent)
                for other in cols.names:
                    if owner.get(other) == layout:
                        del owner[other]

    def forget(self, names: Iterable[str]) -> None:
        """Drop state of series that no longer exist (a source lost them)."""
        names = list(names)
        self._release(names)
        for n in names:
            self._sent.pop(n, None)


def _is_counter(name: str) -> bool:
    """``…_total`` or ``…_total{labels}``: a cumulative counter.

    Its cumulative value hides its rate from a relative threshold (idle CPU seconds
    move by 1e-5 of their total each second), and rates (CPU ratios in ``/metrics``
    and ``clumon top``) need consecutive values; so a counter is sent whenever it
    moved (by more than ``min_change_abs``).
    """
    base = name.split("{", 1)[0]
    return base.endswith("_total")
