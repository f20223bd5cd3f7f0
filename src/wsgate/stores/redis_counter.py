"""Connections per user counted in Redis, so the cap holds across every node.

Layout: one sorted set per user, ``{P}:conns:<sub>`` (see
:class:`~wsgate.stores.redis_keys.RedisKeys`); a member ``<node_id>:<conn_id>`` per live connection,
scored with the expiry of its lease in milliseconds of Redis' own clock (so
the nodes' clocks never matter). The key's TTL follows its latest lease, so
Redis drops the set of a user nobody holds anymore.

- ``acquire`` is one Lua script, atomic in Redis: drop the expired members,
  count the rest, add the new one when under the limit, set the TTL. No two
  nodes can both take the last slot.
- Each node renews the leases of its own live members every
  ``renew_every`` seconds from one background task, so a node that dies
  without releasing frees its slots within ``lease`` seconds. Renewal
  *re-adds* a live member Redis no longer has (Redis restarted without
  persistence, or hung longer than the lease so the member expired): the
  cap heals instead of staying exceeded for good. It runs again at once
  when Redis returns from an outage (the connector's recovery hook).
- ``release`` removes the member. A failure is logged, not raised: the
  lease frees the slot anyway.

An ``acquire`` that Redis cannot answer raises :class:`StoreUnavailable`:
the runtime refuses the connection (fail closed), as it does when the
revocation store cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.stores")

DEFAULT_LEASE = 60.0
DEFAULT_RENEW_EVERY = 20.0
DEFAULT_TIMEOUT = 2.0
RENEW_BATCH = 500
"""Users renewed per pipeline round trip."""

# KEYS[1] the user's set; ARGV: limit, lease ms, member. Returns 1 (taken,
# or already held) or 0 (at the limit, nothing written).
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
        return 0
    end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""

# KEYS[1] the user's set; ARGV: lease ms, then this node's live members.
# Every one is (re-)added: a member Redis lost is a live connection all the
# same. A member released while this ran is removed again by the node
# right after (see RedisConnectionCounter.renew).
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
    redis.call('PEXPIREAT', KEYS[1], last[2])
end
return 1
"""


class RedisConnectionCounter:
    """Live connections per ``sub`` across every node sharing one Redis.

    The same role as :class:`~wsgate.security.limits.ConnectionCounter`,
    with async ``acquire(sub, conn_id)`` / ``release(sub, conn_id)``.
    ``lease`` must be comfortably longer than ``renew_every`` (a renewal
    may be late by a Redis timeout or two).
    """

    def __init__(
        self,
        url: str | RedisConnector,
        limit: int,
        *,
        prefix: str | None = None,
        lease: float = DEFAULT_LEASE,
        renew_every: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        node_id: str | None = None,
    ) -> None:
        if renew_every is None:
            renew_every = min(DEFAULT_RENEW_EVERY, lease / 3)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if not (math.isfinite(renew_every) and renew_every > 0):
            raise ValueError("renew_every must be a positive number of seconds")
        if not (math.isfinite(lease) and lease > renew_every):
            raise ValueError("lease must be longer than renew_every")
        self.limit = limit
        self.lease = lease
        self.renew_every = renew_every
        self.node_id = node_id or uuid.uuid4().hex
        self._lease_ms = math.ceil(lease * 1000)
        self.connector = RedisConnector.shared(url, prefix=prefix, timeout=timeout)
        self.keys = self.connector.keys
        self.connector.health.on_recover(self._renew_after_outage)
        self._client: Redis = self.connector.client
        self._acquire_script = self._client.register_script(_ACQUIRE_LUA)
        self._renew_script = self._client.register_script(_RENEW_LUA)
        self._held: dict[str, set[str]] = {}
        """sub -> conn_ids holding a slot through this node: what the renewal renews."""
        self._task: asyncio.Task[None] | None = None
        self._orphans: set[asyncio.Task[None]] = set()
        self._closed = False

    def key(self, sub: str) -> str:
        """The Redis key of ``sub``'s set."""
        return self.keys.conns(sub)

    def member(self, conn_id: str) -> str:
        """This node's member for ``conn_id``."""
        return f"{self.node_id}:{conn_id}"

    def count_held(self, sub: str) -> int:
        """Slots ``sub`` holds through this node (not the shared total)."""
        return len(self._held.get(sub, ()))

    async def acquire(self, sub: str, conn_id: str) -> bool:
        """Take a slot; False when ``sub`` is at the limit across all nodes.

        Raises :class:`StoreUnavailable` when Redis cannot answer.
        """
        if self._closed:
            raise StoreUnavailable("the Redis connection counter is closed")
        self.start()
        self.connector.check("acquire")
        try:
            taken = await self._acquire_script(
                keys=[self.key(sub)], args=[self.limit, self._lease_ms, self.member(conn_id)]
            )
        except RedisError as exc:
            raise self.connector.health.failed("acquire", exc) from exc
        except asyncio.CancelledError:
            # The script may have run: give the slot back rather than leave
            # it to the lease.
            self._release_later(sub, conn_id)
            raise
        self.connector.health.ok()
        if not taken:
            return False
        self._held.setdefault(sub, set()).add(conn_id)
        return True

    async def release(self, sub: str, conn_id: str) -> None:
        """Remove the member; a failure is logged (the lease frees the slot)."""
        held = self._held.get(sub)
        if held is None or conn_id not in held:
            return
        held.discard(conn_id)
        if not held:
            del self._held[sub]
        await self._remove(sub, conn_id)

    async def _remove(self, sub: str, conn_id: str) -> None:
        try:
            self.connector.check("release")
            await self._client.zrem(self.key(sub), self.member(conn_id))
        except StoreUnavailable:
            pass  # counted by the connector; the lease frees the slot
        except RedisError as exc:
            # The lease frees the slot within ``lease`` seconds anyway.
            self.connector.health.failed("release", exc)

    def _release_later(self, sub: str, conn_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._remove(sub, conn_id))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    def start(self) -> None:
        """Start the lease renewal (idempotent); call from a running event loop."""
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self.connector.start()
        self._task = asyncio.get_running_loop().create_task(
            self._renew_forever(), name="wsgate-connection-leases"
        )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except StoreUnavailable:
                pass  # counted by the connector; renewed again when Redis returns
            except Exception:
                log.exception("connection lease renewal failed")

    async def _renew_after_outage(self) -> None:
        if not self._closed:
            await self.renew()

    async def renew(self) -> None:
        """Extend (or re-add) the lease of every slot this node holds.

        Raises :class:`StoreUnavailable` when Redis cannot answer.
        """
        self.connector.check("renew")
        subs = [(sub, sorted(conns)) for sub, conns in self._held.items() if conns]
        try:
            for start in range(0, len(subs), RENEW_BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for sub, conns in subs[start : start + RENEW_BATCH]:
                        members = [self.member(conn_id) for conn_id in conns]
                        await self._renew_script(
                            keys=[self.key(sub)], args=[self._lease_ms, *members], client=pipe
                        )
                    await pipe.execute()
        except RedisError as exc:
            raise self.connector.health.failed("renew", exc) from exc
        # A connection released while the renewal ran was re-added by it:
        # take it out again rather than leave it to its lease.
        for sub, conns in subs:
            held = self._held.get(sub, set())
            for conn_id in conns:
                if conn_id not in held:
                    await self._remove(sub, conn_id)

    async def aclose(self) -> None:
        """Stop the renewal, give back this node's slots and close the client.

        Giving back is best effort: a slot Redis does not hear about expires
        with its lease.
        """
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, *self._orphans) if t is not None]
        if self._task is not None:
            self._task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        held, self._held = self._held, {}
        if held:
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for sub, conns in held.items():
                        pipe.zrem(self.key(sub), *(self.member(c) for c in conns))
                    await pipe.execute()
            except RedisError as exc:
                log.warning("could not give back this node's connection slots: %s", exc)
        await self.connector.aclose()
