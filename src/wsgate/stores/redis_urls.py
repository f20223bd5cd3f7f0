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

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

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


# -- per topology: the factories the stores' client builders plug in by scheme ----------


def sentinel_command(url: str, *, pool_size: int, timeout: float, **options: Any) -> Redis:
    """The master of a Sentinel service, over a bounded pool that waits up to ``timeout``."""
    target = parse_url(url)
    client: Redis = _sentinel(target, timeout).master_for(
        target.service or "",
        redis_class=Redis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=pool_size,
        timeout=timeout,
        **options,
    )
    return client


def sentinel_dedicated(url: str, **options: Any) -> Redis:
    """One connection to the master of a Sentinel service, for one blocking read."""
    target = parse_url(url)
    timeout = options.get("socket_connect_timeout") or 2.0
    client: Redis = _sentinel(target, timeout).master_for(
        target.service or "", redis_class=Redis, **options
    )
    return client


def cluster_command(url: str, *, pool_size: int, timeout: float, **options: Any) -> Any:
    """A ``RedisCluster`` (it routes each command to the node owning its keys' slot).

    redis-py's cluster client has no waiting pool: ``pool_size`` bounds each
    node's connections and a burst beyond it fails (answered ``unavailable``).
    """
    target = parse_url(url)
    options.pop("health_check_interval", None)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        max_connections=pool_size,
        **options,
    )


def cluster_dedicated(url: str, *, route_key: str | None = None, **options: Any) -> Redis:
    """One connection to the cluster node that owns ``route_key``'s slot (any node if None).

    A plain connection, not a ``RedisCluster``: a subscription works on any
    node (a classic ``PUBLISH`` reaches every node's subscribers), and a
    blocking read of one key (``XREAD`` of the fan-out stream) works on the
    node owning its slot, which is found when the connection is first made
    (so a new client after a failover finds the new owner).
    """
    target = parse_url(url)
    pool = _SlotOwnerPool(
        target,
        route_key,
        username=target.username,
        password=target.password,
        **({"connection_class": SSLConnection} if target.tls else {}),
        **options,
    )
    return Redis(connection_pool=pool)


# -- what the stores of this branch call --------------------------------------------------


def command_client(url: str, *, timeout: float, pool_size: int = 100, name: str = "wsgate") -> Any:
    """A pooled client for commands (``Redis``, or ``RedisCluster`` for a cluster URL)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "client_name": name,
        "retry": command_retry(),
    }
    topology = parse_url(url).topology
    if topology is Topology.SENTINEL:
        return sentinel_command(url, pool_size=pool_size, timeout=timeout, **options)
    if topology is Topology.CLUSTER:
        return cluster_command(url, pool_size=pool_size, timeout=timeout, **options)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout, **options
    )
    return Redis(connection_pool=pool)


def subscriber_client(
    url: str, *, connect_timeout: float, name: str, route_key: str | None = None
) -> Redis:
    """One connection for one subscription or blocking read: no read deadline, no retry."""
    options: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "client_name": name,
        "retry": Retry(NoBackoff(), 0),
    }
    topology = parse_url(url).topology
    if topology is Topology.SENTINEL:
        return sentinel_dedicated(url, **options)
    if topology is Topology.CLUSTER:
        return cluster_dedicated(url, route_key=route_key, **options)
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


_rotation = itertools.count()
"""Which startup node a keyless dedicated cluster connection tries first."""


class _SlotOwnerPool(ConnectionPool):
    """A pool for one cluster node, chosen when its first connection is made.

    With a ``route_key``, the node is the master owning that key's slot
    (``CLUSTER SLOTS`` asked of the startup nodes in turn); without one, the
    next startup node.
    """

    def __init__(self, target: RedisUrl, route_key: str | None, **kwargs: Any) -> None:
        host, port = target.nodes[next(_rotation) % len(target.nodes)]
        super().__init__(host=host, port=port, **kwargs)
        self._target = target
        self._route_key = route_key
        self._resolved = route_key is None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._resolved:
            self.connection_kwargs["host"], self.connection_kwargs["port"] = await self._owner()
            self._resolved = True
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]

    async def _owner(self) -> tuple[str, int]:
        assert self._route_key is not None
        slot = key_slot(self._route_key.encode())
        kwargs = {
            k: v
            for k, v in self.connection_kwargs.items()
            if k in ("username", "password", "socket_connect_timeout", "ssl")
        }
        kwargs["socket_timeout"] = kwargs.get("socket_connect_timeout") or 2.0
        failure: Exception | None = None
        for host, port in self._target.nodes:
            probe = Redis(host=host, port=port, **kwargs)
            try:
                ranges = await probe.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call,unused-ignore]
            except (RedisError, OSError) as exc:
                failure = exc
                continue
            finally:
                await probe.aclose()
            owner = _slot_owner(ranges, slot)
            if owner is not None:
                return owner
        raise RedisConnectionError(f"no cluster node could say who owns slot {slot}") from failure


def _slot_owner(ranges: Any, slot: int) -> tuple[str, int] | None:
    """The master ``(host, port)`` of ``slot`` in a ``CLUSTER SLOTS`` reply (as redis-py parses it).

    redis-py answers a dict ``{(start, end): {"primary": (host, port), ...}}``;
    the raw reply is a list ``[[start, end, [host, port, id], ...], ...]``.
    """
    if isinstance(ranges, dict):
        for (start, end), nodes in ranges.items():
            if int(start) <= slot <= int(end):
                host, port = nodes["primary"][:2]
                return _text(host), int(port)
        return None
    for entry in ranges or ():
        if int(entry[0]) <= slot <= int(entry[1]):
            host, port = entry[2][0], entry[2][1]
            return _text(host), int(port)
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
