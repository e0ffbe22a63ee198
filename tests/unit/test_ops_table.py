"""The op table: dispatch by name from the table, roles per op, errors as values."""

from __future__ import annotations

import asyncio

import pytest

from clumon.root.ops import ADMIN, OPERATOR, READER, Op, OpTable, QueryError
from clumon.root.server import caller_role


async def _echo(args: dict) -> dict:
    return {"got": args}


def _call(table: OpTable, name, args, caller=READER):
    return asyncio.run(table.call(name, args, caller))


def test_ops_are_found_by_name_and_unknown_ones_listed():
    table = OpTable([Op("echo", _echo), Op("wipe", _echo, role=OPERATOR, mutating=True)])
    assert _call(table, "echo", {"a": 1}) == {"got": {"a": 1}}
    for name in ("nope", "__init__", "call", 42, None):
        with pytest.raises(QueryError) as err:
            _call(table, name, {})
        assert err.value.code == "unknown_op" and "echo, wipe" in err.value.message
    with pytest.raises(QueryError) as err:
        _call(table, "echo", ["not", "a", "map"])
    assert err.value.code == "bad_args"


def test_an_op_needs_its_role():
    table = OpTable([Op("wipe", _echo, role=OPERATOR, mutating=True)])
    with pytest.raises(QueryError) as err:
        _call(table, "wipe", {}, READER)
    assert err.value.code == "forbidden" and "loopback" in err.value.message
    assert _call(table, "wipe", {}, OPERATOR) == {"got": {}}
    assert _call(table, "wipe", {}, ADMIN) == {"got": {}}


def test_a_table_refuses_a_name_twice_and_an_unknown_role():
    with pytest.raises(ValueError, match="twice"):
        OpTable([Op("a", _echo), Op("a", _echo)])
    with pytest.raises(ValueError, match="role"):
        Op("a", _echo, role="root")


def test_callers_by_address_until_keys_and_roles_are_configured():
    assert caller_role("127.0.0.1") == ADMIN and caller_role("::1") == ADMIN and caller_role(None) == ADMIN
    assert caller_role("10.1.2.3") == READER and caller_role("garbage") == READER


def test_the_roots_table_has_every_op_once_with_a_role(tmp_path):
    """Built as the root builds it: the ops that change anything need more than reading."""
    from clumon.proto.tree import LatestCache, Routes
    from clumon.root.downward import Downward
    from clumon.root.ops.admin import AdminOps
    from clumon.root.ops.alerts import AlertOps
    from clumon.root.ops.live import LiveOps
    from clumon.root.ops.logs import LogOps
    from clumon.root.ops.masks import MaskOps
    from clumon.root.ops.reads import ReadOps
    from clumon.root.ops.sched import SchedOps
    from clumon.root.ops.stored import StoredOps
    from clumon.root.registry import Registry

    registry = Registry()
    down = Downward(registry, Routes(), lambda hop, req: False, "root")
    ops = [*LiveOps(registry, LatestCache(), None).ops(), *StoredOps(registry, None).ops(),
           *SchedOps(registry, LatestCache(), None).ops(), *ReadOps(down).ops(), *MaskOps(down, tmp_path).ops(), *AdminOps(dict, lambda n: False, registry).ops(),
           *AlertOps(None).ops(), *LogOps(registry, None).ops()]
    table = OpTable(ops)
    assert table.names() == sorted(["nodes", "tree", "latest", "overview", "series", "summary", "events",
                                    "cluster", "jobs", "job", "utilization", "read", "masks", "set_mask", "health", "forget",
                                    "alerts", "silence", "rules_reload", "grid", "logs"])
    changing = {op.name for op in ops if op.mutating}
    assert changing == {"forget", "set_mask", "silence", "rules_reload"}
    assert all(op.role != READER for op in ops if op.mutating)
