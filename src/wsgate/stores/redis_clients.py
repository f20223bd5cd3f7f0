"""How wsgate builds its redis-py clients: the two kinds it needs, nothing else.

Why two kinds, each configured by hand rather than left at redis-py's
defaults (which changed between the versions ``redis>=5.0.1`` allows):

- **command clients** share one *bounded, blocking* pool: past
  ``pool_size`` connections a caller waits (up to ``POOL_WAIT_FACTOR`` x
  ``timeout``: a busy node, not a broken Redis) for one to come back
  instead of failing (redis-py 8's ``ConnectionPool`` raises
  ``MaxConnectionsError`` at 100) or opening connections without bound
  (redis-py 7's). A burst of 1,000 handshakes queues for a moment; it is
  not refused. Each command has a ``timeout`` read deadline, and a single
  quick retry only when a pooled connection turns out to be dead
  (``ConnectionError``), never on a timeout: a hung Redis costs one
  ``timeout``, not three.
- **dedicated clients** carry one long blocking read each (a subscription,
  ``XREAD BLOCK``): no socket read timeout (redis-py 5.0-8.0 applied the
  2 s ``socket_timeout`` to pub/sub and dropped an idle subscription every
  2 s), TCP keepalive, and no silent reconnect: the caller sees the drop,
  and resumes from where it stopped.

Sentinel and Cluster URLs are built elsewhere and plugged in here by
scheme (see :data:`SCHEMES`), so the stores never care which it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from wsgate.stores.redis_urls import COMMAND_FACTORIES, DEDICATED_FACTORIES, parse_url

ClientFactory = Callable[..., Redis]
"""``(url, **options) -> Redis`` for one URL scheme."""

SCHEMES: dict[str, ClientFactory] = dict(COMMAND_FACTORIES)
"""Extra URL schemes (``redis+sentinel``...) -> the factory of their command client."""

DEDICATED_SCHEMES: dict[str, ClientFactory] = dict(DEDICATED_FACTORIES)
"""Extra URL schemes -> the factory of their dedicated (blocking-read) client."""


POOL_WAIT_FACTOR = 3
"""A caller waits up to this many command timeouts for a pooled connection.

Longer than one command: a burst queues behind healthy commands on a node
whose event loop is busy. A Redis known to be down is not waited for at all
(see :mod:`wsgate.stores.redis_health`).
"""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def command_client(
    url: str,
    *,
    pool_size: int,
    timeout: float,
    name: str = "wsgate",
    retries: int = 1,
    route_key: str | None = None,
) -> Redis:
    """A client over a bounded pool: at most ``pool_size`` connections, callers wait.

    ``retries=0`` for a prober that must see every dropped connection.
    ``route_key``: a key of the deployment, which a Cluster URL routes by.
    """
    parse_url(url)  # a malformed or unknown URL fails here, without its password
    factory = SCHEMES.get(_scheme(url))
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "client_name": name,
        # One retry, only for a pooled connection Redis closed (restart, idle
        # timeout); a timeout is not retried.
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries, (RedisConnectionError,)),
        "health_check_interval": 0,
    }
    if factory is not None:
        return factory(url, pool_size=pool_size, timeout=timeout, route_key=route_key, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout * POOL_WAIT_FACTOR, **options
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def dedicated_client(
    url: str, *, connect_timeout: float, name: str, route_key: str | None = None
) -> Redis:
    """A client of one connection for one long blocking read; it never reconnects by itself."""
    factory = DEDICATED_SCHEMES.get(_scheme(url))
    options: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "client_name": name,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if factory is not None:
        return factory(url, route_key=route_key, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=2, timeout=connect_timeout, **options
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
