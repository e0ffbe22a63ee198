"""The op table as the root wires it, served without a socket and over its real
query socket on 127.0.0.1 (one process, a real SQLite file)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import msgpack
import pytest
import zmq
import zmq.asyncio

from clumon.proto import transport
from clumon.root.config import RootConfig
from clumon.root.ops import ADMIN, READER, ROLES, QueryError
from clumon.root.service import Root
from clumon.root.storage import Store

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # generous: a reply on loopback comes in milliseconds
#: the ops of DESIGN.md's interface table
DESIGN_OPS = {"nodes", "tree", "latest", "read", "series", "summary", "events", "masks", "set_mask",
              "forget", "health"}


def with_root(tmp_path, scenario: Callable[[Root, zmq.asyncio.Context], Awaitable[None]]) -> None:
    """Run ``scenario(root, its context)`` against a root built as the daemon builds it (not serving
    children; its query server runs only while the scenario starts it)."""
    async def main() -> None:
        store = Store(f"sqlite:///{tmp_path / 'root.db'}")
        cfg = RootConfig(listen="tcp://127.0.0.1:*", query="tcp://127.0.0.1:*", metrics="",
                         database=f"sqlite:///{tmp_path / 'root.db'}", state_dir=tmp_path, request_timeout=2.0)
        ctx = transport.make_context()
        root = Root(cfg, ctx, store)
        try:
            await scenario(root, ctx)
        finally:
            root.ingest.close()
            root.downlink.close()
            root.query_conn.close()
            store.close()
            ctx.term()
    asyncio.run(main())


def test_every_op_of_the_root_has_a_role_and_changing_ops_need_more_than_reading(tmp_path):
    async def scenario(root: Root, ctx: zmq.asyncio.Context) -> None:
        names = root.ops.names()
        assert DESIGN_OPS <= set(names)
        for name in names:
            op = root.ops[name]
            assert op.name == name and op.role in ROLES
            assert not op.mutating or op.role != READER, name
        assert {n for n in names if root.ops[n].mutating} >= {"forget", "set_mask"}
    with_root(tmp_path, scenario)


def test_the_table_answers_without_the_socket(tmp_path):
    """What a second front (the dashboard's HTTP API) would call: same validation, same errors."""
    async def scenario(root: Root, ctx: zmq.asyncio.Context) -> None:
        health = await root.ops.call("health", {}, READER)
        assert health["name"] == root.name and health["nodes"] == len(root.registry.nodes)
        with pytest.raises(QueryError) as err:
            await root.ops.call("forget", {"node": "ghost"}, READER)
        assert err.value.code == "forbidden"
        with pytest.raises(QueryError) as err:
            await root.ops.call("forget", {"node": "ghost"}, ADMIN)
        assert err.value.code == "unknown_node"
        with pytest.raises(QueryError) as err:
            await root.ops.call("series", {"node": 7}, READER)
        assert err.value.code == "bad_args" and "'node'" in err.value.message
    with_root(tmp_path, scenario)


def test_the_query_socket_answers_every_request_in_one_shape(tmp_path):
    async def scenario(root: Root, ctx: zmq.asyncio.Context) -> None:
        server = asyncio.create_task(root.server.serve())
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(f"tcp://127.0.0.1:{root.query_conn.port()}")

        async def ask(request: Any) -> dict:
            await client.send(request if isinstance(request, bytes) else msgpack.packb(request))
            async with asyncio.timeout(WAIT):
                return msgpack.unpackb(await client.recv())

        try:
            reply = await ask({"op": "nodes", "args": {}, "id": 7})
            assert reply["ok"] is True and reply["id"] == 7 and isinstance(reply["result"], list)
            reply = await ask({"op": "nope", "args": {}})
            assert reply["ok"] is False and reply["error"]["code"] == "unknown_op"
            assert "nodes" in reply["error"]["message"]
            assert (await ask({"op": "nodes", "args": [1, 2]}))["error"]["code"] == "bad_args"
            assert (await ask({"op": "nodes", "timeout": 0}))["error"]["code"] == "bad_args"
            assert (await ask(b"\xc1"))["error"]["code"] == "bad_request"
            assert (await ask([1, 2]))["error"]["code"] == "bad_request"
            # a loopback caller may change things: forget is judged, not refused
            reply = await ask({"op": "forget", "args": {"node": "ghost"}})
            assert reply["error"]["code"] == "unknown_node"
            assert root.server.requests == 7 and root.server.errors == 6
        finally:
            client.close()
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
    with_root(tmp_path, scenario)
