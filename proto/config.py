"""TOML configuration into frozen dataclasses, strictly.

Each daemon declares one frozen dataclass (sections are nested dataclasses) and
calls ``load(Config, path)`` once in ``main()``. Unknown keys, wrong types, bad
endpoints and values outside a key's range raise ``ConfigError`` whose message
names the file, the key and what was expected; ``main()`` prints it on one line
and exits 2.

A key's range is declared with its field (``between``, ``name_field``,
``one_of``, or ``checked`` with a ``MapOf``); ``_build`` checks it after the type, so NaN,
infinities and out-of-range values never reach a daemon.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable, NewType

from .curve import CurveConfig
from .transport import valid_endpoint

#: A ZeroMQ endpoint string, checked at load time.
Endpoint = NewType("Endpoint", str)


class ConfigError(ValueError):
    """A configuration problem, with file, key and expectation in the message."""


def _type_name(tp: Any) -> str:
    if tp is Endpoint:
        return "endpoint (tcp://host:port)"
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp)
        return f"list of {_type_name(arg)}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, where: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{where}: key '{key}': expected {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and dataclasses.is_dataclass(others[0]) and isinstance(value, dict):
            # a table that may be absent: its own error says what is wrong inside it
            return _convert(others[0], value, key, where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, where)
            except ConfigError:
                pass
        raise bad()
    if tp is Endpoint:
        if not valid_endpoint(value):
            raise bad()
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return _build(tp, value, key + ".", where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise bad()
        (arg, *_) = typing.get_args(tp)
        return tuple(_convert(arg, v, f"{key}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        return dict(value)
    if tp is float:
        if type(value) not in (int, float):
            raise bad()
        return float(value)
    if tp is int:
        if type(value) is not int:
            raise bad()
        return value
    if tp is bool or tp is str:
        if type(value) is not tp:
            raise bad()
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise bad()
        return Path(value)
    if tp is Any:
        return value
    raise bad()


def _build(cls: type, data: dict[str, Any], prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls, include_extras=False)
    # a field may be spelt otherwise in the file (``for`` is a Python keyword: ``for_``)
    fields = {f.metadata.get(KEY, f.name): f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' (known: {known})")
        name = fields[key].name
        kwargs[name] = _convert(hints[name], value, prefix + key, where)
        spec = fields[key].metadata.get(CHECK)
        bad = spec(kwargs[name]) if spec is not None else None
        if bad is not None:
            suffix, expected, got = bad
            raise ConfigError(f"{where}: key '{prefix}{key}{suffix}': expected {expected}, got {got!r}")
    for key, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.init and f.name not in kwargs:
            raise ConfigError(f"{where}: missing key '{prefix}{key}': expected {_type_name(hints[f.name])}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        problem = check()
        if problem:  # a nested table says where it is
            raise ConfigError(f"{where}: {prefix.rstrip('.') + ': ' if prefix else ''}{problem}")
    return obj


def from_dict(cls: type, data: dict[str, Any], where: str = "<config>") -> Any:
    """Build ``cls`` from a plain dict (used by ``load`` and by tests)."""
    return _build(cls, data, "", where)


def load(cls: type, path: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """Read a TOML file (or nothing: defaults) into ``cls``.

    ``overrides`` are applied on top of the file (command-line flags), keyed by
    top-level field names.
    """
    data: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        data = read_toml(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return _build(cls, data, "", where)


def regex_problem(text: str, key: str) -> str | None:
    """Why ``text`` (the value of ``key``) is no regular expression; None when it is one."""
    try:
        re.compile(text)
    except re.error as exc:
        return f"key '{key}': not a regex ({exc}): {text!r}"
    return None


def read_toml(path: str | Path, error: type[Exception] = ConfigError, what: str = "") -> dict[str, Any]:
    """The tables of a TOML file; ``error`` with one line naming the file (after
    ``what``, e.g. "roles file ") when it cannot be read or is not TOML. Every
    file Clumon+ reads (configs, alert rules, roles) goes through here."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise error(f"{what}{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what}{path}: not valid TOML: {exc}") from None


# --- ranges, declared with each field ---------------------------------------------

#: the metadata key under which a field keeps its range check
CHECK = "clumon.check"
#: ... and its spelling in the file, when that differs from its name
KEY = "clumon.key"

HOUR = 3600.0
DAY = 86400.0
MIB = 1024 * 1024

#: a check returns None when the value is good, else (key suffix, expected, bad value)
Check = Callable[[Any], "tuple[str, str, Any] | None"]


def _bound(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else f"{x:,}".replace(",", "_")


@dataclass(frozen=True, slots=True)
class Range:
    """A finite number from ``low`` to ``high`` (``low`` itself excluded when
    ``low_open``, so 0 can mean "positive"). NaN and infinities never pass."""

    low: float
    high: float
    low_open: bool = False

    def expected(self, kind: str) -> str:
        if kind == "integer":
            return f"an integer from {_bound(self.low)} to {_bound(self.high)}"
        left = "(" if self.low_open else "["
        return f"a finite {kind} in {left}{_bound(self.low)}, {_bound(self.high)}]"

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high

    def __call__(self, value: Any):
        if self.holds(value):
            return None
        kind = "integer" if isinstance(self.low, int) and isinstance(self.high, int) else "number"
        return "", self.expected(kind), value


@dataclass(frozen=True, slots=True)
class Pattern:
    """Text matching ``regex`` of at most ``max_len`` characters (``empty`` allowed or not)."""

    regex: str
    max_len: int
    what: str
    empty: bool = False

    def __call__(self, value: Any):
        if value == "" and self.empty:
            return None
        if len(value) <= self.max_len and re.fullmatch(self.regex, value):
            return None
        shown = value if len(value) <= 40 else value[:37] + "..."
        return "", f"{self.what} of at most {self.max_len} characters", shown


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of a fixed set of words (compared in upper case when ``fold``)."""

    options: tuple[str, ...]
    fold: bool = False

    def __call__(self, value: Any):
        probe = value.upper() if self.fold else value
        if probe in self.options:
            return None
        return "", f"one of {', '.join(self.options)}", value


@dataclass(frozen=True, slots=True)
class MapOf:
    """A table of numbers: every value passes ``values``; the keys are one of
    ``keys`` when given (otherwise the daemon's ``check`` judges them)."""

    values: Range
    keys: tuple[str, ...] | None = None

    def __call__(self, value: Any):
        for key, item in value.items():
            if self.keys is not None and key not in self.keys:
                return f".{key}", f"a key out of {', '.join(self.keys)} (unknown key)", item
            if not self.values.holds(item):
                return f".{key}", self.values.expected("number of seconds"), item
        return None


def checked(default: Any = dataclasses.MISSING, check: Check | None = None, key: str | None = None,
            **kw: Any) -> Any:
    """A dataclass field whose value must pass ``check`` when given in a file;
    ``key`` spells it in the file when its Python name cannot (``for``)."""
    return field(default=default, metadata={CHECK: check, **({KEY: key} if key else {})}, **kw)


def between(default: Any, low: float, high: float, low_open: bool | None = None) -> Any:
    """A number from ``low`` to ``high``; a float ``low`` of 0 is excluded unless
    ``low_open=False`` (a timing of 0 s means "never" to a timer)."""
    if low_open is None:
        low_open = isinstance(low, float) and low == 0.0
    return checked(default, Range(low, high, low_open))


def one_of(default: str, options: tuple[str, ...], fold: bool = False) -> Any:
    return checked(default, OneOf(options, fold))


#: letters, digits and ``. _ - : @ +``; no ``/`` (node paths), spaces or globs
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@+-]*"
NAME_MAX = 200


def name_field(default: str, empty: bool = True) -> Any:
    """A node's name (its routing id and its part of every path): short and plain;
    empty (the host name) when ``empty``."""
    return checked(default, Pattern(NAME_PATTERN, NAME_MAX, "a name of letters, digits and . _ - : @ +", empty))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level() -> Any:
    return one_of("INFO", LOG_LEVELS, fold=True)


def max_frame_bytes(default: int) -> Any:
    """The largest frame a daemon accepts or sends (64 KiB to 1 GiB)."""
    return between(default, 64 * 1024, 1024 * MIB)


def spool_max_bytes(default: int) -> Any:
    return between(default, 4096, 1024 * 1024 * MIB)


def spool_max_age() -> Any:
    return between(3600.0, 1.0, 30 * DAY)


# The link timings every tier shares, declared once: children (ChildLink) and
# parents (the aggregator's and root's down_after) use these.

def heartbeat_interval() -> Any:
    return between(5.0, 0.01, HOUR)


def down_after() -> Any:
    return between(30.0, 0.1, DAY)


@dataclass(frozen=True, slots=True)
class ChildLink:
    """What the configs of children (agent, aggregator, simulator) share: the
    timings of the link to their parent, declared once. Their dataclasses
    inherit it."""

    #: a side that has sent nothing for this long sends a HEARTBEAT
    heartbeat_interval: float = heartbeat_interval()
    #: fail over to the next parent when the current one was silent this long
    failover_after: float = between(15.0, 0.1, DAY)
    #: frames not acknowledged after this long are sent again
    resend_after: float = between(30.0, 0.1, DAY)
    #: the first HELLO and reconnects wait up to this long, so a restarted
    #: parent sees no storm
    jitter: float = between(1.0, 0.0, HOUR, low_open=False)
    #: ``[curve]``: CurveZMQ keys (``proto/curve.py``); none: the links are open
    curve: CurveConfig = CurveConfig()

    def uplink_keys(self) -> tuple | None:
        """The curve keys for each of ``parents`` (None when keys are off)."""
        if not self.curve.on:
            return None
        from .curve import ClientKeys
        return tuple(ClientKeys.load(self.curve.secret_key, k)
                     for k in self.curve.parent_keys(len(getattr(self, "parents", ()))))

    @property
    def node_name(self) -> str:
        """The configured name, or the host name when it is empty."""
        import socket
        return getattr(self, "name", "") or socket.gethostname()

    @property
    def timings(self):
        """The uplink's timings (heartbeat, failover, resend, jitter)."""
        from .uplink import LinkTimings
        return LinkTimings(self.heartbeat_interval, self.failover_after, self.resend_after, self.jitter)
