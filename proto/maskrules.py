"""The mask rule grammar: numbered rules and mask sets, shared by the agent (its
filter, its config, its state file) and the root (``set_mask``, which checks a change
as the agent will before sending it).

A mask set is a list of numbered rules, each a series glob and what passes::

    10 node_uptime_seconds U              unbounded: always passes
    20 node_top_cpu_ratio* B 0.01 1       bounded: passes while 0.01 <= value <= 1
    90 node_cpu_seconds_total{cpu=* drop  never passes

A series is judged by the lowest-numbered rule whose glob matches it; a series no
rule matches passes (as if ``U``). Rules travel as these one-line texts everywhere:
in the agent's TOML, in the ``set_masks`` CONTROL frame, in the state file and in
``clumon mask set``. The change-suppression settings (``min_change``,
``min_change_abs``, ``max_silence``) travel with them.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

UNBOUNDED, BOUNDED, DROP = "U", "B", "drop"

#: the defaults of change suppression
MIN_CHANGE = 0.001
MIN_CHANGE_ABS = 1e-9
MAX_SILENCE = 30.0

class MaskError(ValueError):
    """A rule or mask set that cannot be used; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One numbered rule: ``number glob U``, ``number glob B lower upper``, ``number glob drop``."""

    number: int
    glob: str
    kind: str
    lower: float = -math.inf
    upper: float = math.inf

    def passes(self, value: float | None) -> bool:
        if self.kind == UNBOUNDED:
            return True
        if self.kind == DROP or value is None:
            return False
        return self.lower <= value <= self.upper

    def text(self) -> str:
        if self.kind == BOUNDED:
            return f"{self.number} {self.glob} B {_fmt(self.lower)} {_fmt(self.upper)}"
        return f"{self.number} {self.glob} {self.kind}"


def _fmt(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(x)


def parse_rule(text: str) -> Rule:
    """A rule from its one-line text; raises ``MaskError`` saying what was expected."""
    if not isinstance(text, str):
        raise MaskError(f"expected a rule text like '10 node_load* U', got {text!r}")
    tokens = text.split()
    expected = f"expected 'NUMBER GLOB U', 'NUMBER GLOB B LOWER UPPER' or 'NUMBER GLOB drop', got {text!r}"
    if len(tokens) < 3:
        raise MaskError(expected)
    try:
        number = int(tokens[0])
    except ValueError:
        raise MaskError(f"rule number must be an integer: {expected}") from None
    if number < 0:
        raise MaskError(f"rule number must not be negative, got {text!r}")
    if tokens[-1] in (UNBOUNDED, DROP):
        # a glob may hold spaces (a label value); it is everything between number and kind
        return Rule(number, " ".join(tokens[1:-1]), tokens[-1])
    if len(tokens) >= 5 and tokens[-3] == BOUNDED:
        try:
            lower, upper = float(tokens[-2]), float(tokens[-1])
        except ValueError:
            raise MaskError(f"bounds must be numbers: {expected}") from None
        if math.isnan(lower) or math.isnan(upper) or lower > upper:
            raise MaskError(f"bounds must satisfy lower <= upper, got {text!r}")
        return Rule(number, " ".join(tokens[1:-3]), BOUNDED, lower, upper)
    raise MaskError(expected)


@dataclass(frozen=True, slots=True)
class MaskSet:
    """Rules in number order and the change-suppression settings."""

    rules: tuple[Rule, ...] = ()
    min_change: float = MIN_CHANGE
    min_change_abs: float = MIN_CHANGE_ABS
    max_silence: float = MAX_SILENCE

    def __post_init__(self) -> None:
        numbers = [r.number for r in self.rules]
        if len(set(numbers)) != len(numbers):
            dup = sorted({n for n in numbers if numbers.count(n) > 1})
            raise MaskError(f"rule numbers must be unique, repeated: {dup}")
        for key in ("min_change", "min_change_abs", "max_silence"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or math.isinf(v):
                raise MaskError(f"{key} must be a finite number >= 0, got {v!r}")
        object.__setattr__(self, "rules", tuple(sorted(self.rules, key=lambda r: r.number)))

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_change: float = MIN_CHANGE,
                   min_change_abs: float = MIN_CHANGE_ABS, max_silence: float = MAX_SILENCE) -> "MaskSet":
        return cls(tuple(parse_rule(t) for t in texts), min_change, min_change_abs, max_silence)

    @classmethod
    def from_dict(cls, d: Mapping) -> "MaskSet":
        """From the map form used in CONTROL frames and the state file."""
        if not isinstance(d, Mapping):
            raise MaskError(f"expected a map with 'rules', got {d!r}")
        rules = d.get("rules", [])
        if not isinstance(rules, (list, tuple)):
            raise MaskError(f"'rules' must be a list of rule texts, got {rules!r}")
        kw = {k: d[k] for k in ("min_change", "min_change_abs", "max_silence") if d.get(k) is not None}
        return cls.from_texts(rules, **kw)

    def as_dict(self) -> dict:
        return {"rules": [r.text() for r in self.rules], "min_change": self.min_change,
                "min_change_abs": self.min_change_abs, "max_silence": self.max_silence}

    def rule_for(self, name: str) -> Rule | None:
        """The lowest-numbered rule whose glob matches ``name``, or None."""
        for r in self.rules:
            if fnmatch.fnmatchcase(name, r.glob):
                return r
        return None
