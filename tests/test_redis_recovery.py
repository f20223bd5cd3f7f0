"""The Redis side of connection-state recovery, on a real Redis: saved sessions and read-back.

End to end across two demo nodes: tests/test_recovery.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wsgate.core.connection import Connection
from wsgate.core.handshake import Handshake
from wsgate.core.recovery import Recovery, Saved
from wsgate.principal import Principal
from wsgate.stores.redis_bus import RedisStreamBus
from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.redis_recovery import RedisRecoveryStore
from wsgate.stores.revocation import StoreUnavailable


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[tuple[RedisRecoveryStore, RedisStreamBus]]:
    connector = RedisConnector(redis_url, prefix=f"wsgate-test-{uuid.uuid4().hex}")
    store = RedisRecoveryStore(connector)
    bus = RedisStreamBus(connector, maxlen=5)
    try:
        yield store, bus
    finally:
        await bus.aclose()
        await store.aclose()


def _connection(sub: str, rooms: set[str]) -> Connection:
    class Link:
        name = "socketio"

    return Connection(
        id="old-conn",
        namespace="/",
        principal=Principal(sub=sub),
        handshake=Handshake(transport="socketio"),
        transport=Link(),  # type: ignore[arg-type]
        rooms=rooms,
    )


async def test_a_session_is_taken_once_and_only_by_its_user(
    parts: tuple[RedisRecoveryStore, RedisStreamBus],
) -> None:
    store, _ = parts
    await store.save("pid-1", "alice", "/", '{"conn": "c", "rooms": ["lobby"]}', 60)
    assert await store.take("pid-1", "mallory", "/") is None
    assert await store.take("pid-1", "alice", "/admin") is None
    assert await store.take("pid-1", "alice", "/") == '{"conn": "c", "rooms": ["lobby"]}'
    assert await store.take("pid-1", "alice", "/") is None
    ttl = await store.connector.client.pttl(store.connector.keys.name("recovery", "pid-1"))
    assert ttl == -2  # gone


async def test_the_session_expires_with_the_window(
    parts: tuple[RedisRecoveryStore, RedisStreamBus],
) -> None:
    store, _ = parts
    await store.save("pid-2", "alice", "/", "{}", 30)
    ttl = await store.connector.client.pttl(store.connector.keys.name("recovery", "pid-2"))
    assert 0 < ttl <= 30_000


async def test_read_back_from_the_stream_and_its_bounds(
    parts: tuple[RedisRecoveryStore, RedisStreamBus],
) -> None:
    store, bus = parts
    first = await bus.publish("/", "message", {"text": "seen"}, "room:lobby", None)
    ids = [
        await bus.publish("/", "message", {"text": f"m{i}"}, "room:lobby", None) for i in range(3)
    ]
    entries = await store.since(first, 10, 1_000_000)
    assert entries is not None
    assert [(e[0], e[3]["text"]) for e in entries] == list(
        zip(ids, ["m0", "m1", "m2"], strict=True)
    )
    assert await store.since(first, 2, 1_000_000) is None  # more than the limit followed
    assert await store.since(first, 10, 50) is None  # more bytes than the limit
    assert await store.since(ids[-1], 10, 1_000_000) == []  # nothing missed
    for bad in ["", "x", "1-", "0-0", "99999999999999-0", "1-1; DEL"]:
        assert await store.since(bad, 10, 1_000_000) is None
    # Retention (maxlen 5, trimmed about): once the offset itself is trimmed away,
    # what followed it may be too, and nothing is recovered.
    for i in range(200):
        await bus.publish("/", "message", {"text": f"n{i}"}, None, None)
    assert await store.since(first, 1000, 1_000_000) is None


async def test_through_the_core_a_session_round_trips_on_redis(
    parts: tuple[RedisRecoveryStore, RedisStreamBus],
) -> None:
    store, bus = parts
    recovery = Recovery(window=60, shared=store)
    offset = await bus.publish("/", "message", {"text": "seen"}, "room:lobby", None)
    await recovery.save(_connection("alice", {"lobby"}), "pid-3")
    await bus.publish("/", "message", {"text": "elsewhere"}, "room:other", None)
    await bus.publish("/", "message", {"text": "own"}, "room:lobby", "old-conn")
    await bus.publish("/", "message", {"text": "missed"}, "room:lobby", None)
    assert await recovery.take("pid-3", sub="bob", namespace="/") is None
    saved = await recovery.take("pid-3", sub="alice", namespace="/")
    assert saved is not None and saved.rooms == frozenset({"lobby"})
    missed = await recovery.missed(saved, offset)
    assert missed is not None and [m.data["text"] for m in missed] == ["missed"]


class _Down:
    async def save(self, *args: Any) -> None:
        raise StoreUnavailable("down")

    async def take(self, *args: Any) -> str | None:
        raise StoreUnavailable("down")

    async def since(self, *args: Any) -> Any:
        raise StoreUnavailable("down")


async def test_with_redis_down_nobody_is_recovered_and_nothing_raises() -> None:
    recovery = Recovery(window=60, shared=_Down())
    await recovery.save(_connection("alice", {"lobby"}), "pid-4")
    assert await recovery.take("pid-4", sub="alice", namespace="/") is None
    saved = Saved("alice", "/", "old-conn", frozenset({"lobby"}))
    assert await recovery.missed(saved, "1-0") is None


async def test_what_the_bus_would_not_deliver_is_not_replayed(
    parts: tuple[RedisRecoveryStore, RedisStreamBus],
) -> None:
    """An entry Redis added too late (its sender answered 503), and a retried duplicate."""
    store, bus = parts
    first = await bus.publish("/", "message", {"text": "seen"}, None, None)
    client = store.connector.client

    async def add(seq: int, text: str, sent_ms: int) -> None:
        body = json.dumps(
            {"n": "other-node", "q": seq, "ns": "/", "e": "message", "d": {"text": text},
             "r": None, "s": None}
        )  # fmt: skip
        await client.xadd(store.stream, {"m": body, "t": sent_ms, "l": 2000})

    now_ms = int(time.time() * 1000)
    await add(1, "late", now_ms - 60_000)
    await add(2, "kept", now_ms)
    await add(2, "kept", now_ms)  # the same seq again: a command redis-py retried
    entries = await store.since(first, 10, 1_000_000)
    assert entries is not None and [e[3]["text"] for e in entries] == ["kept"]
