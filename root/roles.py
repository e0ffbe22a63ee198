"""Who may do what: the roles file and the caller of an op (``Principal``).

With CurveZMQ on, a client is the name of its key (``ann.key`` is ann); the
roles file at the root (its key ``roles``) gives each name a role:

* ``admin``: everything.
* ``operator`` with ``nodes`` (globs over names or tree paths, ``rack-0[1-4]/*``):
  the site-wide ops, and reads and mutating ops whose every target node is one of
  theirs; list answers are cut to their nodes.
* ``user``: the site-wide summaries and node states (``nodes``, ``tree``,
  ``health``, ``cluster``, ``utilization``, an ``overview`` without per-node
  values) and their own jobs; nothing per node.

A name the file does not list may do nothing. Without a roles file the rule of
before keys stays: loopback is admin, anyone else a reader of everything.

``foreign_node`` is the other half of "a key speaks only for itself": the nodes
an aggregator's key may forward are those of its subtree.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from clumon.proto.config import read_toml

ADMIN, OPERATOR, USER = "admin", "operator", "user"
#: a site without a roles file: root/ops/base.py's ROLES by address, "legacy-admin"...
LEGACY = "legacy-"
LEGACY_ADMIN, LEGACY_READER = LEGACY + "admin", LEGACY + "reader"


class RolesError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an op: a key's name (or a peer address) and its role."""

    name: str
    role: str
    #: an operator's node globs
    nodes: tuple[str, ...] = ()

    def covers(self, node: str, path: str = "") -> bool:
        """Whether ``node`` (at tree ``path``) is one of this operator's nodes."""
        if self.role == ADMIN or self.role.startswith(LEGACY):
            return True
        if self.role != OPERATOR:
            return False
        full = f"{path}/{node}" if path else node
        return any(fnmatch.fnmatchcase(node, g) or fnmatch.fnmatchcase(full, g) for g in self.nodes)

    def describe(self) -> str:
        if self.role == OPERATOR:
            return f"{self.name} (operator of {', '.join(self.nodes)})"
        return f"{self.name} ({self.role})"


NOBODY_ROLE = "none"


def load_roles(path: str | Path) -> dict[str, Principal]:
    """The roles file: ``[[client]]`` tables with ``key`` (a key's name), ``role``
    and, for operators, ``nodes``. Raises ``RolesError`` (one line)."""
    data = read_toml(path, RolesError, "roles file ")
    unknown = set(data) - {"client"}
    if unknown:
        raise RolesError(f"roles file {path}: unknown table {sorted(unknown)[0]!r} (expected [[client]])")
    out: dict[str, Principal] = {}
    clients = data.get("client", [])
    if not isinstance(clients, list):
        raise RolesError(f"roles file {path}: 'client' must be [[client]] tables")
    for i, c in enumerate(clients):
        where = f"roles file {path}: [[client]] #{i + 1}"
        if not isinstance(c, dict):
            raise RolesError(f"{where}: expected a table")
        bad = set(c) - {"key", "role", "nodes"}
        if bad:
            raise RolesError(f"{where}: unknown key {sorted(bad)[0]!r} (expected key, role, nodes)")
        key, role, nodes = c.get("key"), c.get("role"), c.get("nodes", [])
        if not isinstance(key, str) or not key:
            raise RolesError(f"{where}: key 'key': expected the name of a client key (ann for ann.key)")
        if role not in (ADMIN, OPERATOR, USER):
            raise RolesError(f"{where} ({key}): key 'role': expected admin, operator or user, got {role!r}")
        if not isinstance(nodes, list) or not all(isinstance(g, str) and g for g in nodes):
            raise RolesError(f"{where} ({key}): key 'nodes': expected a list of node globs")
        if role == OPERATOR and not nodes:
            raise RolesError(f"{where} ({key}): an operator needs 'nodes' (globs such as \"rack-1/*\")")
        if role != OPERATOR and nodes:
            raise RolesError(f"{where} ({key}): 'nodes' is for operators only")
        if key in out:
            raise RolesError(f"{where}: key {key!r} is listed twice")
        out[key] = Principal(key, role, tuple(nodes))
    return out


class Roles:
    """The roles file in force (read again by ``reload``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.by_key = load_roles(self.path)

    def reload(self) -> None:
        self.by_key = load_roles(self.path)  # RolesError: the old ones stay

    def principal(self, key_name: str | None) -> Principal:
        if not key_name:
            return Principal("?", NOBODY_ROLE)
        return self.by_key.get(key_name) or Principal(key_name, NOBODY_ROLE)


def foreign_node(registry, path: tuple[str, ...], inner) -> tuple[str, object] | None:
    """A sender (or, for a state EVENT, its subject) that the aggregators of
    ``path`` may not speak for, with its registry entry; None when they may.

    A node the root places under another aggregator, while that placement is
    live, is not theirs. A node the root does not know yet, or whose placement
    went down (a failover, a move), takes the path its frames come by."""
    from clumon.proto.frames import Kind

    where = where_subject = "/".join(path)
    names = [inner.sender]
    if inner.kind is Kind.EVENT and inner.body.type == "state" and inner.body.subject != inner.sender:
        names.append(inner.body.subject)
        where_subject = f"{where}/{inner.sender}"
    gone = ("down", "unreachable")
    for name in names:
        n = registry.nodes.get(name)
        expected = where if name == inner.sender else where_subject
        if n is None or n.path == expected or n.state in gone or name == path[-1]:
            continue
        if n.path and any(registry.nodes.get(a) is not None and registry.nodes[a].state in gone
                          for a in n.path.split("/")):
            continue
        return name, n
    return None
