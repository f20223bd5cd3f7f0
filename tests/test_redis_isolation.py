"""Deployments sharing one Redis never see each other; leases heal; idle readers stay.

Each test starts its own redis-server (tests/redis_server.py), so it can be
restarted and hung without touching the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from clients import connect
from redis_server import own_redis
from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Chat
from wsgate.stores import (
    RedisConnectionCounter,
    RedisConnector,
    RedisRevocationStore,
    RedisStreamBus,
    StoreUnavailable,
)

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def deployment(url: str, prefix: str | None, nodes: int) -> AsyncIterator[list[str]]:
    """``nodes`` Apps on one Redis URL under one prefix (None: the default derived one)."""
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for _ in range(nodes):
            port = free_port()
            app = App([Chat()], settings_for(port, redis_url=url, redis_prefix=prefix))
            urls.append(await stack.enter_async_context(serve(app, port)))
            bus = app.runtime.fanout.bus
            assert isinstance(bus, RedisStreamBus)
            await asyncio.wait_for(bus.wait_ready(), 10)
        yield urls


async def quiet(client: Any, event: str, seconds: float) -> bool:
    """True when ``event`` did not arrive within ``seconds``."""
    try:
        await client.next_event(event, timeout=seconds)
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((0, "tenant-a"), (0, "tenant-b"), id="two-prefixes-one-db"),
        pytest.param((0, None), (1, None), id="db0-db1-default-prefix"),
    ],
)
async def test_two_deployments_on_one_redis_never_see_each_other(
    tmp_path: Path, first: tuple[int, str | None], second: tuple[int, str | None]
) -> None:
    async with own_redis(tmp_path) as redis:
        url_x, url_y = redis.url(first[0]), redis.url(second[0])
        async with (
            deployment(url_x, first[1], 2) as (x1, x2),
            deployment(url_y, second[1], 1) as (y1,),
        ):
            token = make_token(sub="shared", ttl=600)
            async with (
                connect("websocket", x1, token=make_token(sub="speaker", ttl=600)) as speaker,
                connect("websocket", x2, token=token) as x_listener,
                connect("socketio", y1, token=token) as y_listener,
            ):
                for client in (speaker, x_listener, y_listener):
                    assert await client.call("join", {"room": "lobby"}) == {"room": "lobby"}
                assert await speaker.call("say", {"room": "lobby", "text": "hi"}) == {
                    "delivered": True
                }
                # The same deployment's other node gets it (the bus works) ...
                assert (await x_listener.next_event("message", timeout=10))["text"] == "hi"
                # ... the other deployment, on the same Redis server, never does.
                assert await quiet(y_listener, "message", 1.5)

                store = RedisRevocationStore(url_x, prefix=first[1])
                try:
                    await store.revoke_sub("shared", expires_at=time.time() + 600)
                finally:
                    await store.aclose()
                assert await x_listener.wait_closed(timeout=10)
                assert await quiet(y_listener, "auth:revoked", 1.5)
                assert y_listener.connected
                assert await y_listener.call("ping") == "pong"


async def wait_for(condition: Any, seconds: float = 15) -> float:
    """Poll ``condition()`` (async) until true; seconds it took (fails past ``seconds``)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        with contextlib.suppress(Exception):
            if await condition():
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.parametrize("fault", ["restart", "hang"])
async def test_the_per_user_cap_heals_after_redis_loses_the_leases(
    tmp_path: Path, fault: str
) -> None:
    """Issue 10 #5: lost leases used to stay lost (cap 5, 10 live connections)."""
    async with own_redis(tmp_path) as redis:
        url = redis.url()
        prefix = f"t{uuid.uuid4().hex[:8]}"
        node = RedisConnectionCounter(url, 3, prefix=prefix, lease=1.0, timeout=0.5)
        other = RedisConnectionCounter(url, 3, prefix=prefix, lease=1.0, timeout=0.5)
        raw = Redis.from_url(url)
        try:
            node.start()
            for conn in ("a", "b", "c"):
                assert await node.acquire("u", conn)
            assert not await other.acquire("u", "x"), "at the cap"
            if fault == "restart":
                await redis.restart()  # no persistence: every lease is gone
            else:
                redis.hang()
                await asyncio.sleep(2.5)  # longer than the 1 s lease
                redis.resume()

            async def healed() -> bool:
                return int(await raw.zcard(node.key("u"))) == 3

            took = await wait_for(healed)
            print(f"cap healed {took:.2f} s after Redis returned ({fault})")

            async def refused() -> bool:
                # (another node: its own prober may see Redis back a moment later)
                return not await other.acquire("u", "x")

            await wait_for(refused)  # the cap holds again
            await node.release("u", "a")
            assert await other.acquire("u", "x"), "a released slot is free"
        finally:
            await node.aclose()
            await other.aclose()
            await raw.aclose()


async def test_an_idle_reader_keeps_its_connection_and_misses_nothing(tmp_path: Path) -> None:
    """Issue 10 #4: a 2 s read timeout dropped idle subscriptions; messages 2 s apart were lost."""
    async with own_redis(tmp_path) as redis:
        sender = RedisStreamBus(redis.url())
        receiver = RedisStreamBus(redis.url())
        got: asyncio.Queue[Any] = asyncio.Queue()

        async def deliver(*args: Any) -> None:
            got.put_nowait(args[2])

        try:
            receiver.start(deliver)
            await asyncio.wait_for(receiver.wait_ready(), 10)
            for number in range(3):
                await asyncio.sleep(2.5)  # idle past redis-py's usual 2 s socket timeout
                await sender.publish("/", "tick", {"n": number}, None, None)
                assert await asyncio.wait_for(got.get(), 10) == {"n": number}
            assert receiver.connector.health.failures() == {}, "never reconnected"
        finally:
            await sender.aclose()
            await receiver.aclose()


async def test_a_reader_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Entries added while a reader is cut off arrive, in order, once it is back."""
    async with own_redis(tmp_path, persistent=True) as redis:
        sender = RedisStreamBus(redis.url())
        receiver = RedisStreamBus(redis.url())
        got: list[int] = []

        async def deliver(*args: Any) -> None:
            got.append(args[2])

        try:
            receiver.start(deliver)
            await asyncio.wait_for(receiver.wait_ready(), 10)
            for number in range(5):
                await sender.publish("/", "n", number, None, None)
            await wait_for(_length(got, 5))
            admin = Redis.from_url(redis.url())
            try:
                for client in await admin.client_list():
                    if client.get("name", "").endswith("-bus"):
                        await admin.client_kill_filter(_id=client["id"])
                for number in range(5, 50):
                    await sender.publish("/", "n", number, None, None)
            finally:
                await admin.aclose()
            await wait_for(_length(got, 50))
            assert got == list(range(50))
        finally:
            await sender.aclose()
            await receiver.aclose()


def _length(items: list[int], count: int) -> Any:
    async def check() -> bool:
        return len(items) >= count

    return check


async def test_the_stream_is_bounded(tmp_path: Path) -> None:
    async with own_redis(tmp_path) as redis:
        bus = RedisStreamBus(redis.url(), maxlen=100)
        raw = Redis.from_url(redis.url())
        try:
            for number in range(1000):
                await bus.publish("/", "n", number, None, None)
            # MAXLEN ~ trims by whole macro nodes: about maxlen, never the 1,000 written.
            assert 100 <= int(await raw.xlen(bus.stream)) < 300
        finally:
            await bus.aclose()
            await raw.aclose()


@pytest.mark.parametrize("fault", ["restart", "hang"])
async def test_revocation_follows_again_right_after_redis_returns(
    tmp_path: Path, fault: str
) -> None:
    """Issue 10 #7: the watch used to back off to 10 s; now within about a second."""
    async with own_redis(tmp_path, persistent=True) as redis:
        url = redis.url()
        async with deployment(url, "revoke-test", 2) as (node1, node2):
            async with (
                connect("websocket", node1, token=make_token(sub="victim", ttl=600)) as first,
                connect("socketio", node2, token=make_token(sub="victim", ttl=600)) as second,
            ):
                if fault == "restart":
                    await redis.restart()
                else:
                    redis.hang()
                    await asyncio.sleep(3.0)  # past the prober's two slow probes
                    redis.resume()
                store = RedisRevocationStore(url, prefix="revoke-test")
                try:
                    started = time.monotonic()
                    await wait_for(_revoked(store, "victim"))
                finally:
                    await store.aclose()
                for client in (first, second):
                    assert await client.wait_closed(timeout=10)
                took = time.monotonic() - started
                print(f"revocation cut both sockets {took:.2f} s after Redis returned ({fault})")
            async with connect("websocket", node1, token=make_token(sub="other", ttl=600)):
                pass  # and new connections are admitted again


def _revoked(store: RedisRevocationStore, sub: str) -> Any:
    async def revoke() -> bool:
        await store.revoke_sub(sub, expires_at=time.time() + 600)
        return True

    return revoke


async def test_broadcasts_waiting_for_redis_are_bounded(tmp_path: Path) -> None:
    """Past ``max_pending`` broadcasts queued behind a hung Redis, publish fails at once (503)."""
    async with own_redis(tmp_path) as redis:
        connector = RedisConnector(redis.url(), timeout=0.5)
        bus = RedisStreamBus(connector, max_pending=5)
        try:
            await bus.publish("/", "n", 0, None, None)  # connected, clock learnt
            redis.hang()
            stuck = [asyncio.ensure_future(bus.publish("/", "n", 1, None, None))]
            await asyncio.sleep(0.1)  # the writer took it and waits on the hung Redis
            stuck += [asyncio.ensure_future(bus.publish("/", "n", i, None, None)) for i in range(5)]
            await asyncio.sleep(0)
            with pytest.raises(StoreUnavailable):
                await bus.publish("/", "n", 99, None, None)
            assert not any(f.done() for f in stuck), "refused at once, not after a timeout"
            outcomes = await asyncio.gather(*stuck, return_exceptions=True)
            assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        finally:
            redis.resume()
            await bus.aclose()
