"""Refresh-token families in Redis, for several nodes behind one load balancer.

One hash per family, ``{prefix}:refresh:<family>`` (fields ``sub``, ``cur``,
``state``), expiring with the family's newest token. Rotation is one Lua
script, so Redis runs the read and the write with nothing in between: of
concurrent requests on any number of nodes, exactly one sees the token as
current.
"""

from __future__ import annotations

import math
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wsgate.stores.redis_connector import RedisConnector
from wsgate.stores.refresh_families import FamilyState, Rotation, check_family_args
from wsgate.stores.revocation import StoreUnavailable, check_value

DEFAULT_TIMEOUT = 2.0

# ARGV: presented jti, successor jti, keep-until (epoch ms), now (epoch ms).
# The expiry only ever grows (PEXPIREAT ... GT would need Redis 7).
_ROTATE_LUA = """
local cur = redis.call('HGET', KEYS[1], 'cur')
if not cur then return 'unknown' end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return 'revoked' end
local want = tonumber(ARGV[3]) - tonumber(ARGV[4])
if redis.call('PTTL', KEYS[1]) < want then
    redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
if cur == ARGV[1] then
    redis.call('HSET', KEYS[1], 'cur', ARGV[2])
    return 'rotated'
end
redis.call('HSET', KEYS[1], 'state', 'revoked')
return 'reused'
"""

_REVOKE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'state', 'revoked')
end
return 1
"""


class RedisRefreshFamilies:
    """Families shared by every node connected to the same Redis; fails closed on errors."""

    def __init__(
        self,
        url: str | RedisConnector,
        *,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        # The node's shared connector (its bounded pool, Sentinel and Cluster URLs,
        # the deployment's hash-tagged key prefix), as every other Redis store.
        self.connector = RedisConnector.shared(url, prefix=prefix, timeout=timeout)
        self._client: Redis = self.connector.client
        self._rotate = self._client.register_script(_ROTATE_LUA)
        self._revoke = self._client.register_script(_REVOKE_LUA)
        self._closed = False

    def key(self, family: str) -> str:
        return self.connector.keys.name("refresh", family)

    async def start(self, family: str, *, sub: str, jti: str, expires_at: float) -> None:
        check_family_args(family, jti, expires_at)
        check_value(sub, "sub")
        self._check_open()
        key = self.key(family)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping={"sub": sub, "cur": jti, "state": FamilyState.ACTIVE})
                pipe.pexpireat(key, math.ceil(expires_at * 1000))
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refresh family store: {type(exc).__name__}") from exc

    async def rotate(
        self, family: str, *, presented: str, successor: str, expires_at: float
    ) -> Rotation:
        check_family_args(family, successor, expires_at)
        self._check_open()
        args: list[str | int] = [
            presented,
            successor,
            math.ceil(expires_at * 1000),
            math.floor(time.time() * 1000),
        ]
        try:
            answer: Any = await self._rotate(keys=[self.key(family)], args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refresh family store: {type(exc).__name__}") from exc
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        try:
            return Rotation(text)
        except ValueError:
            raise StoreUnavailable("Redis refresh family store: unexpected answer") from None

    async def revoke(self, family: str) -> None:
        self._check_open()
        try:
            await self._revoke(keys=[self.key(family)], args=[])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refresh family store: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.connector.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the refresh family store is closed")
