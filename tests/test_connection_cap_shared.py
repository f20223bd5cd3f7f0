"""The per-user connection cap shared through Redis: it holds across nodes, not per node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from clients import Refused, connect
from support import free_port, make_token, serve, settings_for
from wsgate import App
from wsgate.demo.gateways import Chat
from wsgate.stores import RedisKeys, StoreUnavailable
from wsgate.stores.redis_counter import RedisConnectionCounter

CAP = 3


def unique_prefix() -> str:
    return f"wsgate-test-{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """Two Apps with ``max_connections_per_user=3`` counting in one Redis under ``prefix``."""
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for _ in range(2):
            port = free_port()
            app = App(
                [Chat()],
                settings_for(
                    port, redis_url=redis_url, redis_prefix=prefix, max_connections_per_user=CAP
                ),
            )
            built = app.runtime.slots
            assert isinstance(built, RedisConnectionCounter), "redis_url shares the cap"
            assert built.limit == CAP
            # The same counter, under this test's own keys.
            await built.aclose()
            app.runtime.slots = app.runtime.admission.slots = RedisConnectionCounter(
                redis_url, CAP, prefix=prefix
            )
            urls.append(await stack.enter_async_context(serve(app, port)))
        yield urls[0], urls[1]


async def refused_code(transport: str, url: str, token: str) -> str | None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, url, token=token):
            pass
    return refused.value.code


async def test_the_cap_holds_across_nodes_and_a_close_frees_a_slot_elsewhere(
    redis_url: str,
) -> None:
    sub = f"user-{uuid.uuid4().hex[:8]}"
    async with two_nodes(redis_url, unique_prefix()) as (node_a, node_b):
        async with contextlib.AsyncExitStack() as stack, contextlib.AsyncExitStack() as first:
            on_a = [
                await first.enter_async_context(connect("socketio", node_a, token=make_token(sub))),
                await stack.enter_async_context(
                    connect("websocket", node_a, token=make_token(sub))
                ),
            ]
            on_b = await stack.enter_async_context(
                connect("socketio", node_b, token=make_token(sub))
            )
            for client in (*on_a, on_b):
                assert await client.call("ping") == "pong"
            # The 4th is refused on either node, over either transport.
            for transport in ("socketio", "websocket"):
                for node in (node_a, node_b):
                    code = await refused_code(transport, node, make_token(sub))
                    assert code == "too_many_connections"
            # Another user is not affected.
            async with connect("websocket", node_b, token=make_token("someone-else")) as other:
                assert await other.call("ping") == "pong"

            # Closing one on node A frees a slot that node B can give out.
            await first.aclose()
            deadline = time.monotonic() + 3
            while True:
                try:
                    async with connect("websocket", node_b, token=make_token(sub)) as fourth:
                        assert await fourth.call("ping") == "pong"
                    break
                except Refused as refused:
                    assert refused.code == "too_many_connections"
                    assert time.monotonic() < deadline, "the released slot never came back"
                    await asyncio.sleep(0.05)


async def test_leases_of_a_crashed_node_do_not_count_but_live_ones_do(redis_url: str) -> None:
    prefix = unique_prefix()
    sub = f"user-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(redis_url)
    try:
        async with two_nodes(redis_url, prefix) as (node_a, _):
            key = RedisKeys(prefix).conns(sub)
            # A node that died holding the whole cap: its leases ran out long ago.
            await redis.zadd(key, {f"dead-node:c{i}": 1000 + i for i in range(CAP)})
            async with connect("socketio", node_a, token=make_token(sub)) as client:
                assert await client.call("ping") == "pong"
                raw: list[bytes] = await redis.zrange(key, 0, -1)  # type: ignore[assignment]
                members = {m.decode() for m in raw}
                assert len(members) == 1 and not any(m.startswith("dead-node:") for m in members)
                ttl = await redis.pttl(key)
                assert 0 < ttl <= 60_000, "the key expires with its latest lease"
            # A live node holding two slots (leases in the future) does count.
            server_time = (await redis.time())[0]
            far = (server_time + 600) * 1000
            await redis.zadd(key, {f"live-node:c{i}": far for i in range(CAP - 1)})
            async with connect("socketio", node_a, token=make_token(sub)) as client:
                assert await client.call("ping") == "pong"
                assert await refused_code("websocket", node_a, make_token(sub)) == (
                    "too_many_connections"
                )
            await redis.delete(key)
    finally:
        await redis.aclose()


async def test_redis_down_at_connect_refuses_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    app = App(
        [Chat()],
        settings_for(port, redis_url="redis://127.0.0.1:1/0", max_connections_per_user=CAP),
    )
    with caplog.at_level(logging.WARNING, logger="wsgate"):
        async with serve(app, port) as url:
            for transport in ("socketio", "websocket"):
                # "Cannot check now, retry": never "unauthorized", which would
                # make a client throw a good token away.
                assert await refused_code(transport, url, make_token()) == "unavailable"
            for _ in range(100):  # the prober logs the outage (once), whatever the traffic
                if any("Redis unreachable" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
    outage_lines = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(outage_lines) == 1, "one line for the outage, not one per refusal"
    refusals = [r for r in caplog.records if "store_unavailable" in r.getMessage()]
    assert refusals, "audited with reason store_unavailable"


# -- the counter itself -----------------------------------------------------------------------


async def test_concurrent_acquires_from_many_nodes_never_exceed_the_cap(redis_url: str) -> None:
    prefix = unique_prefix()
    limit = 7
    nodes = [RedisConnectionCounter(redis_url, limit, prefix=prefix) for _ in range(5)]
    try:
        results = await asyncio.gather(
            *(
                node.acquire("crowd", f"c{i}")
                for i in range(40)
                for node in nodes  # 200 attempts spread over 5 clients
            )
        )
        assert sum(results) == limit
        assert sum(node.count_held("crowd") for node in nodes) == limit
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.zcard(RedisKeys(prefix).conns("crowd")) == limit
            # Acquiring a slot already held is not a second slot.
            holder = next(node for node in nodes if node.count_held("crowd"))
            conn_id = next(iter(holder._held["crowd"]))
            assert await holder.acquire("crowd", conn_id)
            assert await redis.zcard(RedisKeys(prefix).conns("crowd")) == limit
            # Release frees exactly one slot, which one more acquire takes.
            await holder.release("crowd", conn_id)
            await holder.release("crowd", conn_id)  # twice is harmless
            assert await redis.zcard(RedisKeys(prefix).conns("crowd")) == limit - 1
            got = await asyncio.gather(*(node.acquire("crowd", "late") for node in nodes))
            assert sum(got) == 1
        finally:
            await redis.aclose()
    finally:
        for node in nodes:
            await node.aclose()
    redis = Redis.from_url(redis_url)
    try:
        crowd = RedisKeys(prefix).conns("crowd")
        assert await redis.exists(crowd) == 0, "closing gives back the node's slots"
    finally:
        await redis.aclose()


async def test_the_renewal_keeps_live_slots_and_a_stopped_node_loses_them(redis_url: str) -> None:
    prefix = unique_prefix()
    redis = Redis.from_url(redis_url)
    alive = RedisConnectionCounter(redis_url, 2, prefix=prefix, lease=0.6, renew_every=0.15)
    stalled = RedisConnectionCounter(redis_url, 2, prefix=prefix, lease=0.6, renew_every=0.15)
    try:
        assert await alive.acquire("u", "a1")
        assert await stalled.acquire("u", "s1")
        assert stalled._task is not None
        stalled._task.cancel()  # as if the node died: no renewal, no release
        assert not await alive.acquire("u", "a2"), "both slots are held"
        await asyncio.sleep(1.0)  # beyond the lease, within several renewals
        assert await redis.zscore(RedisKeys(prefix).conns("u"), alive.member("a1")) is not None
        swept = await redis.zscore(RedisKeys(prefix).conns("u"), stalled.member("s1"))
        assert swept is None, "swept"
        assert await alive.acquire("u", "a2"), "the stalled node's lease ran out"
    finally:
        await alive.aclose()
        await stalled.aclose()
        await redis.delete(RedisKeys(prefix).conns("u"))
        await redis.aclose()


async def test_unreachable_redis_fails_closed_and_release_failures_are_counted(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = RedisConnectionCounter("redis://127.0.0.1:1/0", 2)
    try:
        with pytest.raises(StoreUnavailable):
            await down.acquire("u", "c1")
        assert down.count_held("u") == 0
    finally:
        await down.aclose()

    counter = RedisConnectionCounter(redis_url, 2, prefix=unique_prefix())
    try:
        assert await counter.acquire("u", "c1")

        async def broken(*args: object) -> None:
            raise RedisConnectionError("gone")

        monkeypatch.setattr(counter._client, "zrem", broken)
        await counter.release("u", "c1")  # does not raise: the lease frees the slot
        assert counter.connector.health.failures().get("release") == 1
        assert counter.count_held("u") == 0
        monkeypatch.undo()
    finally:
        await counter.aclose()
        redis = Redis.from_url(redis_url)
        await redis.delete(counter.key("u"))
        await redis.aclose()
    with pytest.raises(ValueError):
        RedisConnectionCounter(redis_url, 2, lease=10, renew_every=20)
