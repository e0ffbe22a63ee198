"""The socket factory's Conn over a real DEALER/ROUTER pair on 127.0.0.1, in one process."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from clumon.proto import transport

pytestmark = pytest.mark.timeout(60)


def test_a_send_does_not_hide_a_message_waiting_to_be_received():
    """ZeroMQ's FD is edge-triggered: a send on the shadow socket processes the
    socket's pending commands, which consumes the edge that announced an incoming
    message. The asyncio side must still see that message (it once stayed unseen
    until the next one arrived: acks for a simulated agent never came)."""

    async def scenario() -> None:
        ctx = transport.make_context()
        name = f"conn-{os.getpid()}-{os.urandom(3).hex()}"
        parent = transport.router(ctx, "tcp://127.0.0.1:0")
        child = transport.dealer(ctx, name, f"tcp://127.0.0.1:{parent.port()}")
        got: asyncio.Queue = asyncio.Queue()

        async def receive() -> None:
            async for parts in child.messages():
                got.put_nowait(parts)

        task = asyncio.create_task(receive())
        try:
            # the parent learns the child's routing id from its first message
            for _ in range(200):
                if child.send([b"hello"]):
                    break
                await asyncio.sleep(0.01)
            ident, _ = await asyncio.wait_for(parent.aio.recv_multipart(), 10)
            assert parent.send([ident, b"ack"])
            # let the I/O thread deliver it without giving the loop a turn, then send:
            # the send swallows the edge the loop would have woken up for
            time.sleep(0.2)
            assert child.send([b"data"])
            assert await asyncio.wait_for(got.get(), 10) == [b"ack"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            child.close()
            parent.close()
            ctx.destroy(linger=0)

    asyncio.run(scenario())


def test_a_watched_socket_with_a_backlog_lets_other_callbacks_run():
    """A long backlog is drained in slices of ``DRAIN_SLICE_S``: a callback that
    became ready meanwhile (a read waiting on the query socket) runs before the
    backlog is through, not after it."""

    async def scenario() -> None:
        ctx = transport.make_context()
        parent = transport.router(ctx, "tcp://127.0.0.1:0")
        child = transport.dealer(ctx, f"slices-{os.getpid()}", f"tcp://127.0.0.1:{parent.port()}")
        n = 40
        try:
            for i in range(n):
                while not child.send([b"%d" % i]):
                    await asyncio.sleep(0.01)
            while not parent.raw.poll(10):  # the backlog is there before the reader starts
                pass
            time.sleep(0.2)
            handled: list[bytes] = []
            seen_by_other: list[int] = []
            done = asyncio.Event()

            def on_message(parts: list[bytes]) -> None:
                handled.append(parts[1])
                time.sleep(transport.DRAIN_SLICE_S / 2)  # work per message, as a batch at the root
                if len(handled) == n:
                    done.set()

            loop = asyncio.get_running_loop()
            parent.watch(on_message)
            loop.call_soon(lambda: seen_by_other.append(len(handled)))
            await asyncio.wait_for(done.wait(), 30)
            assert handled == [b"%d" % i for i in range(n)]
            assert seen_by_other and seen_by_other[0] < n, "the other callback waited for the whole backlog"
        finally:
            parent.close()
            child.close()
            ctx.destroy(linger=0)

    asyncio.run(scenario())


def test_a_message_above_max_bytes_is_refused_before_it_is_buffered():
    """MAXMSGSIZE on every socket the factory makes: an oversized message never
    reaches the receiver (ZeroMQ drops that peer's connection), others go on."""

    async def scenario() -> None:
        ctx = transport.make_context()
        parent = transport.router(ctx, "tcp://127.0.0.1:0", max_bytes=1000)
        assert parent.raw.getsockopt(__import__("zmq").MAXMSGSIZE) == 1000
        big = transport.dealer(ctx, "big", f"tcp://127.0.0.1:{parent.port()}")
        good = transport.dealer(ctx, "good", f"tcp://127.0.0.1:{parent.port()}")
        try:
            for _ in range(200):
                if big.send([b"x" * 5000]) and good.send([b"small"]):
                    break
                await asyncio.sleep(0.01)
            got = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and len(got) < 3:
                if await parent.aio.poll(100):
                    got.append(await parent.aio.recv_multipart())
                good.send([b"again"])
            idents = {g[0] for g in got}
            assert idents == {b"good"}, got
            assert all(len(g[-1]) < 1000 for g in got)
        finally:
            for c in (big, good, parent):
                c.close()
            ctx.destroy(linger=0)

    asyncio.run(scenario())
