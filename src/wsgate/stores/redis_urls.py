"""Redis clients for every URL form wsgate accepts: one server, Sentinel, Cluster.

``redis_url`` is the one setting; its scheme says what is behind it:

==========================================================  ===============================
``redis://[[user]:password@]host[:port][/db]``               one server (``rediss://``: TLS,
                                                             ``unix://path``: a local socket)
``redis+sentinel://[[user]:password@]h1:p1[,h2:p2...]/svc``  Sentinel: the master of service
``[/db][?sentinel_password=...]``                            ``svc``, found through the
                                                             sentinels and followed across a
                                                             failover (``rediss+sentinel``)
``redis+cluster://[[user]:password@]h1:p1[,h2:p2...]``       Redis Cluster, from any of its
                                                             nodes (``rediss+cluster``)
==========================================================  ===============================

The credentials are the data server's (the master's, every cluster node's);
sentinels that need a password of their own take ``sentinel_password``.

Why a module of its own: redis-py has three client classes for these
(``Redis``, ``Sentinel(...).master_for``, ``RedisCluster``), with different
constructors and one URL parser that knows only the first. The stores build
their clients through :func:`command_client` and :func:`subscriber_client`
and never care which it is. Cluster needs one more thing from the stores:
every key of one multi-key call in one hash slot, which the hash-tagged key
names of :mod:`wsgate.stores.redis_keys` guarantee.

Two kinds of client, as everywhere in wsgate's Redis stores:

- a *command* client (pooled; a read deadline of ``timeout`` per command);
- a *subscriber*: one connection for a pub/sub subscription, without a read
  deadline (an idle subscription is not an error) and without a silent
  reconnect (the owner sees the drop and re-checks what it may have missed).
  On Cluster a classic ``PUBLISH`` reaches the subscribers of every node, so
  the subscriber is a plain connection to one node, tried in turn.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379


class Topology(enum.Enum):
    """What a ``redis_url`` points at."""

    SERVER = "server"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A parsed ``redis_url`` (the password stays out of ``repr``)."""

    topology: Topology
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    """Sentinels (SENTINEL) or startup nodes (CLUSTER); empty for SERVER."""
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def __repr__(self) -> str:
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        return f"RedisUrl({self.topology.value}, {nodes or 'server'}, service={self.service!r})"


_SCHEMES = {
    "redis+sentinel": (Topology.SENTINEL, False),
    "rediss+sentinel": (Topology.SENTINEL, True),
    "redis+cluster": (Topology.CLUSTER, False),
    "rediss+cluster": (Topology.CLUSTER, True),
}


def parse_url(url: str) -> RedisUrl:
    """The topology and parts of ``url``; ValueError (without the password) when malformed."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return RedisUrl(Topology.SERVER, url)
    if scheme not in _SCHEMES:
        raise ValueError(
            "redis_url must start with redis://, rediss://, unix://, redis+sentinel:// "
            "or redis+cluster://"
        )
    topology, tls = _SCHEMES[scheme]
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = DEFAULT_SENTINEL_PORT if topology is Topology.SENTINEL else DEFAULT_PORT
    nodes = tuple(_host_port(item, default_port) for item in hostlist.split(",") if item)
    if not nodes:
        raise ValueError(f"a {scheme}:// URL needs at least one host")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    service: str | None = None
    db = 0
    if topology is Topology.SENTINEL:
        if not segments:
            raise ValueError("a redis+sentinel:// URL needs the service name: .../mymaster[/db]")
        service = segments[0]
        if len(segments) > 1:
            db = _number(segments[1], "database")
    elif segments:
        raise ValueError("a redis+cluster:// URL takes no path (a cluster has database 0 only)")
    if "db" in query:
        db = _number(query["db"][0], "database")
    if topology is Topology.CLUSTER and db != 0:
        raise ValueError("Redis Cluster has database 0 only")
    sentinel_password = query.get("sentinel_password", [None])[0]
    return RedisUrl(
        topology,
        url,
        nodes=nodes,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=tls,
    )


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError("a Redis node needs a host")
    return host, _number(port, "port") if port else default_port


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the {what} in redis_url must be a number") from None


def command_retry() -> Retry:
    """One quick retry, only for a pooled connection Redis closed; a timeout is not retried."""
    return Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,))


def command_client(
    url: str,
    *,
    timeout: float,
    pool_size: int = 100,
    name: str = "wsgate",
) -> Any:
    """A pooled client for commands (``Redis``, or ``RedisCluster`` for a cluster URL).

    On one server and on Sentinel the pool is bounded and *waits* up to
    ``timeout`` for a free connection. redis-py's cluster client has no
    waiting pool: there ``pool_size`` bounds each node's connections and a
    burst beyond it fails (answered as ``unavailable``, never as a bad token).
    """
    target = parse_url(url)
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "client_name": name,
        "retry": command_retry(),
    }
    if target.topology is Topology.SENTINEL:
        return _sentinel(target, timeout).master_for(
            target.service or "",
            redis_class=Redis,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=pool_size,
            timeout=timeout,
            **options,
        )
    if target.topology is Topology.CLUSTER:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            max_connections=pool_size,
            **options,
        )
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout, **options
    )
    return Redis(connection_pool=pool)


_rotation = itertools.count()


def subscriber_client(url: str, *, connect_timeout: float, name: str) -> Redis:
    """One connection for one subscription: no read deadline, no silent reconnect.

    On Cluster each call picks the next startup node, so a subscription that
    lost its node comes back on another.
    """
    target = parse_url(url)
    options: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "client_name": name,
        "retry": Retry(NoBackoff(), 0),
    }
    if target.topology is Topology.SENTINEL:
        client: Redis = _sentinel(target, connect_timeout).master_for(
            target.service or "", redis_class=Redis, **options
        )
        return client
    if target.topology is Topology.CLUSTER:
        host, port = target.nodes[next(_rotation) % len(target.nodes)]
        return Redis(
            host=host,
            port=port,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            **options,
        )
    return Redis.from_url(url, **options)


def _sentinel(target: RedisUrl, timeout: float) -> Sentinel:
    """Sentinel discovery; the data-server credentials go to the master, not the sentinels."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    return Sentinel(  # type: ignore[no-untyped-call]
        list(target.nodes),
        sentinel_kwargs=sentinel_kwargs,
        username=target.username,
        password=target.password,
        db=target.db,
        ssl=target.tls,
    )


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's connections through Sentinel, in a pool that waits rather than fails.

    redis-py's ``SentinelConnectionPool`` grows like its plain pool (without
    bound, or failing at ``max_connections`` from 8.0); combined with
    ``BlockingConnectionPool`` a burst waits up to ``timeout`` instead.
    """
