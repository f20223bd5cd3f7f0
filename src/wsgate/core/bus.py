"""Cross-node fan-out: a broadcast on one node reaches room members on every node.

python-socketio's AsyncRedisManager would carry Socket.IO broadcasts only;
wsgate's rooms span Socket.IO and plain WebSocket clients, so broadcasts go
through one small Redis pub/sub channel of our own and each node delivers
them to all of its transports. The publishing node delivers locally at once
and ignores its own message when it comes back, so a broadcast costs no extra
latency on the node that sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wsgate.core.json_codec import loads_strict

log = logging.getLogger("wsgate.bus")

Deliver = Callable[[str, str, Any, "str | None", "str | None"], Awaitable[None]]
"""(namespace, event, data, room, skip) -> deliver to this node's transports."""


class Bus(Protocol):
    """What the core's fan-out needs from a cross-node bus."""

    def start(self, deliver: Deliver) -> None:
        """Follow other nodes' broadcasts into ``deliver`` (idempotent, from a running loop)."""
        ...

    async def publish(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> None:
        """Hand one broadcast to the other nodes."""
        ...

    async def aclose(self) -> None: ...


class RedisBus:
    """Publishes broadcasts and feeds other nodes' broadcasts to ``deliver``."""

    def __init__(self, url: str, *, channel: str = "wsgate:broadcast") -> None:
        self.url = url
        self.channel = channel
        self.node_id = uuid.uuid4().hex
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self._ready = asyncio.Event()

    def start(self, deliver: Deliver) -> None:
        """Subscribe (idempotent); call from a running event loop."""
        self._deliver = deliver
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="wsgate-redis-bus")

    async def wait_ready(self) -> None:
        """Wait until the subscription is live (tests and start-up ordering)."""
        await self._ready.wait()

    async def publish(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> None:
        envelope = {"n": self.node_id, "ns": namespace, "e": event, "d": data, "r": room, "s": skip}
        try:
            message = orjson.dumps(envelope)
        except TypeError:  # e.g. an integer beyond 64 bits, which the transports do send
            message = json.dumps(envelope).encode()
        try:
            await self._redis.publish(self.channel, message)
        except RedisError as exc:
            # Local members already got the message; other nodes' members miss it.
            log.error("broadcast not published to other nodes (Redis: %s)", type(exc).__name__)

    async def _follow(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    backoff = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._ready.clear()
                log.error("broadcast subscription lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _handle(self, raw: bytes) -> None:
        try:
            message = loads_strict(raw)
            if message["n"] == self.node_id or self._deliver is None:
                return
            await self._deliver(
                message["ns"], message["e"], message["d"], message["r"], message["s"]
            )
        except Exception:
            log.exception("bad broadcast message on %s", self.channel)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()
