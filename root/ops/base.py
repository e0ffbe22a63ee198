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


#: ``Op.targets`` answer for a call that reads site-wide figures only
SITE = "site"
#: the ``Op.scope`` of ops a user may call (site-wide figures, node states)
SITE_SCOPE, NODE_SCOPE, OWN_SCOPE = "site", "node", "own"


@dataclass(frozen=True)
class Op:
    """One query op: ``handler(args)`` answers it; ``role`` is the least role that
    may call it (before roles: ``admin`` = loopback only); ``mutating`` ops change
    the tree or the database.

    With a roles file (``root/roles.py``): ``scope`` is ``site`` (anyone with a
    role), ``own`` (a user sees their own: ``user`` is set to their name) or
    ``node``; ``targets(args)`` names the nodes a call touches (``SITE``: only
    site-wide figures; None: every node, and ``rows(result, allowed)`` cuts the
    answer to an operator's nodes); ``for_user(result)`` strips per-node values
    from a site op's answer for a user."""

    name: str
    handler: Handler
    role: str = READER
    mutating: bool = False
    scope: str = NODE_SCOPE
    targets: Callable[[dict], Any] | None = None
    rows: Callable[[Any, Callable[[str], bool]], Any] | None = None
    for_user: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"op {self.name!r}: unknown role {self.role!r}")


def _own(user: str) -> Callable[[Any], Any]:
    """A user's answer of an ``own`` op: a job of someone else is refused."""
    def cut(result: Any) -> Any:
        job = result.get("job") if isinstance(result, dict) else None
        if isinstance(job, dict) and job.get("user") != user:
            raise QueryError("forbidden", f"job {job.get('id')!r} is not {user}'s")
        return result
    return cut


def allows(caller: str, needed: str) -> bool:
    """Whether a caller of role ``caller`` may run an op that needs ``needed``."""
    return ROLES.index(caller) >= ROLES.index(needed)


class OpTable:
    """The ops by name: dispatch is a lookup in this table, never ``getattr``."""

    def __init__(self, ops: Iterable[Op] = ()):
        self._ops: dict[str, Op] = {}
        self.add(*ops)
        #: a target (a node, an aggregator, a glob) -> the (name, path) of its nodes
        self.resolve: Callable[[str], list[tuple[str, str]]] = lambda t: [(t, "")]
        #: told of every mutating op and every refusal: (caller, op, args, outcome)
        self.audit: Callable[[Any, str, dict, str], None] | None = None

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

    async def call(self, name: Any, args: Any, caller: Any) -> Any:
        """Run op ``name`` for ``caller`` (a ``roles.Principal``, or a role name of
        before keys); raises ``QueryError``."""
        from clumon.root.roles import LEGACY, Principal

        if isinstance(caller, str):
            caller = Principal("loopback" if caller == ADMIN else "remote", LEGACY + caller)
        op = self._ops.get(name) if isinstance(name, str) else None
        if op is None:
            raise QueryError("unknown_op", f"unknown op {name!r}; known: {', '.join(self.names())}")
        if not isinstance(args, dict):
            raise QueryError("bad_args", "args must be a map")
        try:
            args, cut = self._check(op, args, caller)
        except QueryError as exc:
            self._audit(caller, op.name, args, f"forbidden: {exc.message}")
            raise
        if not op.mutating:
            result = await op.handler(args)
            if cut is None:
                return result
            try:
                return cut(result)
            except QueryError as exc:
                self._audit(caller, op.name, args, f"forbidden: {exc.message}")
                raise
        try:
            result = await op.handler(args)
        except QueryError as exc:
            self._audit(caller, op.name, args, f"error {exc.code}: {exc.message}")
            raise
        except Exception as exc:
            self._audit(caller, op.name, args, f"error: {type(exc).__name__}: {exc}")
            raise
        self._audit(caller, op.name, args, "ok")
        return result

    def refusal(self, name: str, args: dict, caller: Any) -> str | None:
        """Why ``caller`` may not run op ``name`` with ``args`` (None: it may), by
        the rules ``call`` applies, without running it or auditing: the web pages
        ask before they are served, so a hidden page is refused, not only hidden."""
        op = self._ops.get(name)
        if op is None:
            return f"unknown op {name!r}"
        try:
            self._check(op, args, caller)
        except QueryError as exc:
            return exc.message
        return None

    def _audit(self, caller: Any, op: str, args: dict, outcome: str) -> None:
        if self.audit is not None:
            try:
                self.audit(caller, op, args, outcome)
            except Exception:  # the audit's trouble is logged where it is written
                pass

    def _check(self, op: Op, args: dict, p: Any) -> tuple[dict, Callable[[Any], Any] | None]:
        """Whether ``p`` may run ``op`` with ``args``: the args to run it with and
        what cuts the answer (None: all of it). Raises ``QueryError('forbidden')``."""
        from clumon.root.roles import ADMIN as R_ADMIN
        from clumon.root.roles import LEGACY, OPERATOR as R_OPERATOR, USER

        if p.role.startswith(LEGACY):
            if not allows(p.role[len(LEGACY):], op.role):
                raise QueryError("forbidden", f"op {op.name!r} needs the {op.role} role: it is accepted only "
                                              "from loopback until keys and roles are configured")
            return args, None
        if p.role == R_ADMIN:
            return args, None

        def no(why: str) -> QueryError:
            return QueryError("forbidden", f"op {op.name!r} is refused to {p.describe()}: {why}")

        if p.role not in (R_OPERATOR, USER):
            raise no("the key has no role in the roles file")
        if op.role == ADMIN:
            raise no("it is for admins only")
        targets = op.targets(args) if op.targets is not None else (SITE if op.scope != NODE_SCOPE else None)
        if p.role == USER:
            if op.mutating or (op.scope == NODE_SCOPE and targets != SITE):
                raise no("a user sees site-wide figures and node states, nothing per node")
            if op.scope == OWN_SCOPE:
                return {**args, "user": p.name}, _own(p.name)
            return args, op.for_user
        # an operator
        if op.scope != NODE_SCOPE and not op.mutating or targets == SITE:
            return args, None
        if targets is None:
            if op.rows is None or op.mutating:
                raise no("name the target nodes (only those of the operator's subtrees are allowed)")
            def mine(node: str) -> bool:
                found = self.resolve(node)
                return bool(found) and all(p.covers(n, path) for n, path in found)
            return args, lambda result: op.rows(result, mine)
        nodes = [found for t in targets for found in self.resolve(t)]
        outside = sorted({n for n, path in nodes if not p.covers(n, path)})
        if not nodes:
            raise no(f"no node matches {', '.join(map(str, targets))}")
        if outside:
            raise no(f"not the operator's: {', '.join(outside[:5])}" + (" ..." if len(outside) > 5 else ""))
        return args, None
