"""Two nodes sharing one Redis: room messages and revocations cross from one to the other."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import jwt
import pytest

from clients import connect
from support import SECRET, free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Admin, Chat
from wsgate.stores import RedisRevocationStore, RedisStreamBus


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[str, str, RedisRevocationStore]]:
    tag = uuid.uuid4().hex
    prefix = f"wsgate-test-{tag}"
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for _ in range(2):
            port = free_port()
            store = RedisRevocationStore(redis_url, prefix=prefix)
            stack.push_async_callback(store.aclose)
            app = App(
                [Chat(), Admin()],
                settings_for(
                    port,
                    redis_url=redis_url,
                    redis_prefix=prefix,
                    allowed_origins="http://app.example",
                ),
                revocations=store,
            )
            urls.append(await stack.enter_async_context(serve(app, port)))
            assert app.runtime.fanout.bus is not None
            await asyncio.wait_for(app.runtime.fanout.bus.wait_ready(), 5)
        admin_store = RedisRevocationStore(redis_url, prefix=prefix)
        stack.push_async_callback(admin_store.aclose)
        yield urls[0], urls[1], admin_store


async def test_room_messages_cross_nodes_and_transports(redis_url: str) -> None:
    async with two_nodes(redis_url) as (node1, node2, _):
        async with (
            connect("socketio", node1, token=make_token(sub="ann")) as ann,
            connect("websocket", node2, token=make_token(sub="ben")) as ben,
        ):
            assert await ann.call("join", {"room": "lobby"}) == {"room": "lobby"}
            assert await ben.call("join", {"room": "lobby"}) == {"room": "lobby"}
            await ann.call("say", {"room": "lobby", "text": "hi from node 1"})
            assert await ben.next_event("message") == {
                "room": "lobby",
                "from": "ann",
                "text": "hi from node 1",
            }
            await ben.call("say", {"room": "lobby", "text": "hi from node 2"})
            got = [await ann.next_event("message") for _ in range(2)]
            assert got[1] == {"room": "lobby", "from": "ben", "text": "hi from node 2"}


async def test_admin_broadcast_reaches_every_node(redis_url: str) -> None:
    async with two_nodes(redis_url) as (node1, node2, _):
        async with (
            connect("socketio", node1, token=make_token(sub="root", roles=["admin"])) as root,
            connect("websocket", node2, token=make_token(sub="ben")) as ben,
        ):
            assert await root.call("admin:broadcast", {"text": "maintenance"}) == {
                "delivered": True
            }
            assert await ben.next_event("announcement") == {"text": "maintenance"}


async def test_revocation_cuts_sockets_on_every_node(redis_url: str) -> None:
    async with two_nodes(redis_url) as (node1, node2, store):
        token = make_token(sub="carl")
        async with (
            connect("socketio", node1, token=token) as on1,
            connect("websocket", node2, token=token) as on2,
        ):
            jti = jwt.decode(token, SECRET, algorithms=["HS256"])["jti"]
            started = time.monotonic()
            await store.revoke_jti(jti, expires_at=time.time() + 600)
            await on1.wait_closed(timeout=2)
            await on2.wait_closed(timeout=2)
            assert time.monotonic() - started < 1.5
        with pytest.raises(Exception, match="token_revoked"):
            async with connect("socketio", node2, token=token):
                pass


async def test_the_bus_carries_what_orjson_cannot_encode(redis_url: str) -> None:
    """An integer beyond 64 bits is valid JSON that orjson refuses: the bus falls back."""
    prefix = f"wsgate-test-{uuid.uuid4().hex}"
    sender = RedisStreamBus(redis_url, prefix=prefix)
    receiver = RedisStreamBus(redis_url, prefix=prefix)
    received: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()

    async def deliver(*args: object) -> None:
        received.put_nowait(args)

    try:
        receiver.start(deliver)
        await asyncio.wait_for(receiver.wait_ready(), 5)
        entry_id = await sender.publish("/", "tally", {"count": 10**20 + 7}, "room:x", None)
        assert await asyncio.wait_for(received.get(), 5) == (
            "/",
            "tally",
            {"count": 10**20 + 7},
            "room:x",
            None,
            entry_id,  # the stream id: the offset connection-state recovery hands out
        )
    finally:
        await sender.aclose()
        await receiver.aclose()
