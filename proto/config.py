"""TOML configuration into frozen dataclasses, strictly.

Each daemon declares one frozen dataclass (sections are nested dataclasses) and
calls ``load(Config, path)`` once in ``main()``. Unknown keys, wrong types and bad
endpoints raise ``ConfigError`` whose message names the file, the key and what was
expected; ``main()`` prints it on one line and exits 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, NewType

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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' (known: {known})")
        kwargs[key] = _convert(hints[key], value, prefix + key, where)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.init and name not in kwargs:
            raise ConfigError(f"{where}: missing key '{prefix}{name}': expected {_type_name(hints[name])}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        problem = check()
        if problem:
            raise ConfigError(f"{where}: {problem}")
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
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return _build(cls, data, "", where)


@dataclass(frozen=True, slots=True)
class ChildLink:
    """What the configs of children (agent, aggregator, simulator) share: the
    timings of the link to their parent, declared once. Their dataclasses
    inherit it."""

    #: a side that has sent nothing for this long sends a HEARTBEAT
    heartbeat_interval: float = 5.0
    #: fail over to the next parent when the current one was silent this long
    failover_after: float = 15.0
    #: frames not acknowledged after this long are sent again
    resend_after: float = 30.0
    #: the first HELLO and reconnects wait up to this long, so a restarted
    #: parent sees no storm
    jitter: float = 1.0

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
