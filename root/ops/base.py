"""What every query op is made of: its validated arguments, its error, its entry
in the op table, and who may call it.

An op is a unit: a name, an async handler taking the request's ``args`` map, the
least role that may call it and whether it changes anything. The query socket and
(later) the HTTP API serve the same table, so both validate alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

#: roles, least first: a caller may run an op whose role is at most its own
ROLES = ("reader", "operator", "admin")
READER, OPERATOR, ADMIN = ROLES


class QueryError(Exception):
    """A request that cannot be answered; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def arg(args: dict, name: str, kind: type | tuple[type, ...], default: Any = ..., *, check=None) -> Any:
    """One validated argument; a missing or ill-typed one is a ``bad_args`` error."""
    if name not in args or args[name] is None:
        if default is ...:
            raise QueryError("bad_args", f"missing argument '{name}'")
        return default
    value = args[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise QueryError("bad_args", f"argument '{name}': expected {_kname(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise QueryError("bad_args", f"argument '{name}': expected {_kname(kind)}, got {value!r}")
    if check is not None and not check(value):
        raise QueryError("bad_args", f"argument '{name}': value {value!r} out of range")
    return value


def _kname(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def time_arg(args: dict, name: str, default: float) -> float:
    """A time: absolute unix seconds, or (if below 1e9) seconds before now."""
    value = arg(args, name, (int, float), default, check=lambda v: math.isfinite(v) and v >= 0)
    return float(value) if value >= 1e9 else time.time() - float(value)


Handler = Callable[[dict], Awaitable[Any]]


@dataclass(frozen=True)
class Op:
    """One query op: ``handler(args)`` answers it; ``role`` is the least role that
    may call it; ``mutating`` ops change the tree or the database."""

    name: str
    handler: Handler
    role: str = READER
    mutating: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"op {self.name!r}: unknown role {self.role!r}")


def allows(caller: str, needed: str) -> bool:
    """Whether a caller of role ``caller`` may run an op that needs ``needed``."""
    return ROLES.index(caller) >= ROLES.index(needed)


class OpTable:
    """The ops by name: dispatch is a lookup in this table, never ``getattr``."""

    def __init__(self, ops: Iterable[Op] = ()):
        self._ops: dict[str, Op] = {}
        self.add(*ops)

    def add(self, *ops: Op) -> None:
        for op in ops:
            if op.name in self._ops:
                raise ValueError(f"op {op.name!r} is in the table twice")
            self._ops[op.name] = op

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __getitem__(self, name: str) -> Op:
        return self._ops[name]

    def names(self) -> list[str]:
        return sorted(self._ops)

    async def call(self, name: Any, args: Any, caller: str) -> Any:
        """Run op ``name`` for a caller of role ``caller``; raises ``QueryError``."""
        op = self._ops.get(name) if isinstance(name, str) else None
        if op is None:
            raise QueryError("unknown_op", f"unknown op {name!r}; known: {', '.join(self.names())}")
        if not allows(caller, op.role):
            raise QueryError("forbidden", f"op {name!r} needs the {op.role} role: it is accepted only "
                                          "from loopback until keys and roles are configured")
        if not isinstance(args, dict):
            raise QueryError("bad_args", "args must be a map")
        return await op.handler(args)
