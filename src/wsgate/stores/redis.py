"""Revocations in Redis, for several nodes behind one load balancer.

Layout (names from :class:`~wsgate.stores.redis_keys.RedisKeys`):

- ``{P}:revoked:jti:<jti>`` and ``{P}:revoked:sub:<sub>`` hold the
  ``revoked_at`` epoch seconds, with a TTL up to ``expires_at``, so Redis
  purges expired entries itself;
- every revocation is published as JSON on ``{P}:revocations``, which
  each node's watch subscribes to.

Revocations live in Redis' memory: a Redis without persistence (no AOF or
RDB) that restarts forgets them, and a revoked token that has not expired
connects again. Run Redis with ``appendonly yes`` when revocations matter.

Pub/sub delivers at most once: a node that is disconnected when a revocation
is published never receives it. So a watch does not reconnect silently (as
redis-py's pub/sub would): it raises :class:`StoreUnavailable`, and the
consumer starts a new watch and re-checks its live sessions with
:meth:`RedisRevocationStore.is_revoked`, which reads the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from wsgate.stores.redis_connector import DEFAULT_TIMEOUT, RedisConnector
from wsgate.stores.revocation import (
    Revocation,
    RevocationKind,
    RevocationWatch,
    StoreUnavailable,
)

log = logging.getLogger("wsgate.stores")

# One atomic step: keep the latest revoked_at (a later "sub" revocation
# covers every token an earlier one did), never shorten the TTL (PEXPIREAT GT
# needs Redis 7; a key without TTL counts as infinite for GT, hence the PTTL
# test), and announce the revocation only once it is stored.
_REVOKE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or current < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
else
    redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


class RedisRevocationStore:
    """Revocations shared by every node connected to the same Redis.

    Built from a URL (``prefix`` and ``timeout`` then apply) or from the
    node's shared :class:`~wsgate.stores.redis_connector.RedisConnector`.
    ``timeout`` bounds connecting, waiting for a pooled connection and each
    command; while the connector knows Redis is down, calls fail at once
    with :class:`StoreUnavailable` (a refused connection) rather than
    stalling a handshake. :meth:`purge_expired` has nothing to do: keys
    expire through their TTL.
    """

    def __init__(
        self,
        url: str | RedisConnector,
        *,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.connector = RedisConnector.shared(url, prefix=prefix, timeout=timeout)
        self.keys = self.connector.keys
        self._timeout = self.connector.timeout
        self.channel = self.keys.revocations_channel
        self._client: Redis = self.connector.client
        self._revoke_script = self._client.register_script(_REVOKE_LUA)
        self._watches: set[_RedisWatch] = set()
        self._closed = False
        self._closing = asyncio.Event()
        self.connector.health.on_recover(self._outage_ended)

    async def _outage_ended(self) -> None:
        """Fail the watches that subscribed before the outage: their connection is suspect.

        A subscription on a connection that Redis closed has failed already;
        one whose peer vanished without closing (a partition, a failover to
        another address) would wait for ever on a dead socket, and the
        revocations published meanwhile were lost either way. Failing it
        makes the follower subscribe anew and re-check the live connections.
        Watches that subscribed during or after the outage reached Redis and
        are kept.
        """
        began = self.connector.health.outage_began
        for watch in list(self._watches):
            if watch.subscribed_at < began:
                watch.lose("Redis came back after an outage")

    def key(self, kind: RevocationKind, value: str) -> str:
        """The Redis key of an entry."""
        return self.keys.revoked(kind, value)

    async def revoke_jti(self, jti: str, *, expires_at: float) -> Revocation:
        revocation = Revocation.of_jti(jti, expires_at=expires_at)
        await self._store(revocation)
        return revocation

    async def revoke_sub(
        self, sub: str, *, expires_at: float, at: float | None = None
    ) -> Revocation:
        revocation = Revocation.of_sub(sub, expires_at=expires_at, at=at)
        await self._store(revocation)
        return revocation

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        self._check_open()
        self.connector.check("is_revoked")
        keys = [self.key("sub", sub)]
        if jti is not None:
            keys.append(self.key("jti", jti))
        try:
            values: list[Any] = await self._client.mget(keys)
        except RedisError as exc:
            raise self.connector.health.failed("is_revoked", exc) from exc
        self.connector.health.ok()
        if len(values) > 1 and values[1] is not None:
            return True
        if values[0] is None:
            return False
        try:
            revoked_at = float(values[0])
        except ValueError as exc:
            raise StoreUnavailable("a Redis revocation entry is corrupt") from exc
        return issued_at is None or issued_at < revoked_at

    async def purge_expired(self, now: float | None = None) -> int:
        self._check_open()
        return 0

    def watch(self) -> RevocationWatch:
        self._check_open()
        return _RedisWatch(self)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for watch in list(self._watches):
            await watch.aclose()
        await self.connector.aclose()

    async def _store(self, revocation: Revocation) -> None:
        self._check_open()
        self.connector.check("revoke")
        args: list[str | int] = [
            repr(revocation.revoked_at),
            math.ceil(revocation.expires_at * 1000),
            self.channel,
            revocation.to_json(),
        ]
        try:
            await self._revoke_script(keys=[self.key(revocation.kind, revocation.value)], args=args)
        except RedisError as exc:
            raise self.connector.health.failed("revoke", exc) from exc
        self.connector.health.ok()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")


class _RedisWatch(RevocationWatch):
    """A subscription on its own connection, which fails instead of reconnecting."""

    def __init__(self, store: RedisRevocationStore) -> None:
        self._store = store
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._lost = asyncio.Event()
        self._lost_because = ""
        self.subscribed_at = float("inf")
        """When Redis confirmed the subscription (``time.monotonic()``)."""

    def lose(self, because: str) -> None:
        """Make the next read raise :class:`StoreUnavailable` (the subscription is suspect)."""
        self._lost_because = because
        self._lost.set()

    async def _start(self) -> None:
        store = self._store
        store._check_open()
        store._watches.add(self)
        # The prober tells when an outage ends (the watch is then renewed); a
        # store built from a URL has a connector of its own, started here.
        store.connector.start()
        store.connector.check("watch")
        # A dedicated client: no read timeout (an idle subscription is not a
        # dead one) and no silent reconnect, which would hide the
        # revocations published while it was away.
        self._client = store.connector.dedicated("watch")
        self._pubsub = self._client.pubsub()
        try:
            await self._pubsub.subscribe(store.channel)
            # Only once Redis confirms is every later PUBLISH sure to reach us.
            deadline = time.monotonic() + store._timeout
            while True:
                remaining = deadline - time.monotonic()
                message = await self._pubsub.get_message(timeout=max(remaining, 0.0))
                if message is not None and message["type"] == "subscribe":
                    self.subscribed_at = time.monotonic()
                    return
                if remaining <= 0:
                    raise StoreUnavailable("Redis did not confirm the revocation subscription")
        except (RedisError, OSError) as exc:
            raise store.connector.health.failed("watch", exc) from exc

    async def _next(self) -> Revocation | None:
        pubsub = self._pubsub
        if pubsub is None:
            return None
        while True:
            message = await self._read(pubsub)
            if message is None:
                return None
            if message.get("type") != "message":
                continue
            try:
                return Revocation.from_json(message["data"])
            except ValueError as exc:
                log.warning("ignored a malformed message on %s: %s", self._store.channel, exc)

    async def _read(self, pubsub: PubSub) -> dict[str, Any] | None:
        """The next pub/sub message, or ``None`` once the store closes."""
        reading = asyncio.ensure_future(pubsub.get_message(timeout=None))
        closing = asyncio.ensure_future(self._store._closing.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        waits = (reading, closing, lost)
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if reading not in done:
            if lost in done and closing not in done:
                raise StoreUnavailable(self._lost_because)
            return None
        try:
            message: dict[str, Any] | None = reading.result()
        except (RedisError, OSError) as exc:
            if self._closed or self._store._closed:
                return None
            raise self._store.connector.health.failed("watch", exc) from exc
        return message or {}

    async def _close(self) -> None:
        self._store._watches.discard(self)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._client is not None:
            with contextlib.suppress(RedisError):
                await self._client.aclose()
