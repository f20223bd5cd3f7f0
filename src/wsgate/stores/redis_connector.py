"""One node's way to Redis, shared by every Redis store of that node.

Why share it: one bounded pool per node (not one per store) is what makes
``redis_pool_size`` the node's real number of Redis connections, and one
health prober gives one outage log, one ``/readyz`` answer and one set of
recovery hooks. Stores built from a bare URL make a connector of their own.
"""

from __future__ import annotations

from redis.asyncio import Redis

from wsgate.stores.redis_clients import command_client, dedicated_client
from wsgate.stores.redis_health import RedisHealth
from wsgate.stores.redis_keys import RedisKeys

DEFAULT_POOL_SIZE = 64
DEFAULT_TIMEOUT = 2.0


class RedisConnector:
    """The command client (bounded, blocking pool), dedicated clients, key names, health."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.timeout = timeout
        self.keys = RedisKeys.for_url(url, prefix)
        self.client: Redis = command_client(
            url,
            pool_size=pool_size,
            timeout=timeout,
            name=f"{self.keys.prefix}-cmd",
            route_key=self.keys.base,  # Cluster: every key of ours is in this one's slot
        )
        self.health = RedisHealth(
            url, timeout=timeout, name=f"{self.keys.prefix}-health", route_key=self.keys.base
        )
        self._users = 0
        self._closed = False

    @classmethod
    def shared(
        cls,
        url: str | RedisConnector,
        *,
        prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RedisConnector:
        """The connector a store uses: the node's own when given one, else one for ``url``.

        Retained either way: the store calls :meth:`aclose` once when it closes.
        """
        if isinstance(url, RedisConnector):
            return url.retain()
        return cls(url, prefix=prefix, timeout=timeout).retain()

    def dedicated(self, role: str) -> Redis:
        """A new client of one connection for a long blocking read (close it after use)."""
        return dedicated_client(
            self.url,
            connect_timeout=self.timeout,
            name=f"{self.keys.prefix}-{role}",
            route_key=self.keys.base,
        )

    def start(self) -> None:
        """Start the health prober (idempotent); call from a running event loop."""
        self.health.start()

    def check(self, operation: str) -> None:
        """Fail at once (StoreUnavailable) while Redis is known to be down."""
        self.health.check(operation)

    def retain(self) -> RedisConnector:
        """One more store uses this connector; each calls :meth:`aclose` once."""
        self._users += 1
        return self

    async def aclose(self) -> None:
        """Close when the last store using it closes."""
        self._users -= 1
        if self._users > 0 or self._closed:
            return
        self._closed = True
        await self.health.aclose()
        await self.client.aclose()
