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

Why a module of its own: redis-py's URL parser knows only the first form,
and Sentinel needs another constructor. The stores never care which it is:
:mod:`wsgate.stores.redis_clients` builds their two kinds of client (command
and dedicated) and hands the other schemes to the factories here, with the
same options.

On Cluster, every key and channel of one deployment shares one hash tag
(:mod:`wsgate.stores.redis_keys`), so multi-key calls and scripts stay in one
slot, and the clients here talk to the master that owns it (see
:func:`cluster_command` for why that beats ``RedisCluster`` here).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
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


# -- per topology: the factories redis_clients plugs in by scheme -------------------------
#
# Each takes the options wsgate's client builder chose (timeouts, keepalive,
# retry, client name) and ``route_key``: a key of the deployment (every one
# of its keys shares one hash tag, so one key routes them all).


def sentinel_command(
    url: str, *, pool_size: int, timeout: float, route_key: str | None = None, **options: Any
) -> Redis:
    """The master of a Sentinel service, over a bounded pool that waits up to ``timeout``.

    redis-py's Sentinel pool follows a failover: a connection that finds
    the old master gone (or demoted to a replica) asks the sentinels again.
    """
    target = parse_url(url)
    options.pop("health_check_interval", None)
    client: Redis = _sentinel(target, timeout).master_for(
        target.service or "",
        redis_class=Redis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=pool_size,
        timeout=timeout,
        **options,
    )
    return _owning_its_pool(client)


def sentinel_dedicated(url: str, *, route_key: str | None = None, **options: Any) -> Redis:
    """One connection to the master of a Sentinel service, for one blocking read."""
    target = parse_url(url)
    options.pop("health_check_interval", None)
    timeout = options.get("socket_connect_timeout") or 2.0
    client: Redis = _sentinel(target, timeout).master_for(
        target.service or "", redis_class=Redis, connection_pool_class=_SentinelPool, **options
    )
    return _owning_its_pool(client)


def cluster_command(
    url: str, *, pool_size: int, timeout: float, route_key: str | None = None, **options: Any
) -> Redis:
    """A plain client to the cluster master that owns the deployment's hash slot.

    Not redis-py's ``RedisCluster``, on purpose: every key and channel of a
    deployment shares one hash tag (:mod:`wsgate.stores.redis_keys`), so all
    of them live on one master, and a plain client to it runs everything the
    stores do, on every redis-py version the pins allow: scripts inside
    pipelines (which ``RedisCluster`` refuses), ``PUBLISH`` (which its async
    client lacks in redis-py 5), the same bounded pool that waits. The owner
    is asked of the startup nodes (``CLUSTER SLOTS``) when the first
    connection is made, and again after a connection to it fails, so a
    failover to a replica is followed. Scaling out *one* deployment across
    masters is not what Cluster gives wsgate; running many deployments (or
    sharing the cluster with other data) is.
    """
    return Redis.from_pool(
        _SlotOwnerPool(
            parse_url(url), route_key, max_connections=pool_size, timeout=timeout, **options
        )
    )


def cluster_dedicated(url: str, *, route_key: str | None = None, **options: Any) -> Redis:
    """One connection to the master owning ``route_key``'s slot (any node when None).

    A subscription works on any node (a classic ``PUBLISH`` reaches every
    node's subscribers); a blocking read of one key (``XREAD`` of the
    fan-out stream) needs the node owning its slot.
    """
    timeout = options.get("socket_connect_timeout") or 2.0
    return Redis.from_pool(
        _SlotOwnerPool(parse_url(url), route_key, max_connections=2, timeout=timeout, **options)
    )


def _owning_its_pool(client: Redis) -> Redis:
    """``aclose()`` closes the pool too (redis-py 5's ``master_for`` leaves it open)."""
    client.auto_close_connection_pool = True
    return client


COMMAND_FACTORIES: dict[str, Any] = {
    "redis+sentinel": sentinel_command,
    "rediss+sentinel": sentinel_command,
    "redis+cluster": cluster_command,
    "rediss+cluster": cluster_command,
}
"""URL scheme -> command client factory (registered in :mod:`wsgate.stores.redis_clients`)."""

DEDICATED_FACTORIES: dict[str, Any] = {
    "redis+sentinel": sentinel_dedicated,
    "rediss+sentinel": sentinel_dedicated,
    "redis+cluster": cluster_dedicated,
    "rediss+cluster": cluster_dedicated,
}
"""URL scheme -> dedicated (blocking-read) client factory."""


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


class _SentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, which also closes the sentinels' clients when it closes.

    Each wsgate client gets a ``Sentinel`` of its own; left open, its
    connections to the sentinels would outlive the event loop.
    """

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """The master's connections through Sentinel, in a pool that waits rather than fails.

    redis-py's ``SentinelConnectionPool`` grows like its plain pool (without
    bound, or failing at ``max_connections`` from 8.0); combined with
    ``BlockingConnectionPool`` a burst waits up to ``timeout`` instead.
    """


_rotation = itertools.count()
"""Which startup node a keyless dedicated cluster connection tries first."""


_MOVED_AWAY = ("MOVED", "CLUSTERDOWN", "READONLY")
"""Answers of a node that no longer owns the slot (or cannot serve it now)."""
_MOVED_ERRORS = (MovedError, ClusterDownError, ReadOnlyError)


class _SlotConnection(Connection):
    """A connection that tells its pool when the slot's owner may have changed.

    ``MOVED`` (resharding, or a failover that demoted this node),
    ``CLUSTERDOWN``, ``READONLY`` and a broken connection mark the pool
    stale; the connection drops its socket, so its next use connects to
    wherever the pool then points it. The error is still raised: the
    command failed, and the stores answer ``unavailable`` for it.
    """

    on_moved: Callable[[], None] | None = None
    before_connect: Callable[[Any], Awaitable[None]] | None = None

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        # Also for a connection made with the pool's make_connection() and
        # connected by hand (the fan-out writer does): it finds the owner too.
        if self.before_connect is not None and not self.is_connected:
            await self.before_connect(self)
        await super().connect(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            # redis-py 6+ parses these into their own classes (MOVED loses
            # its word in str()); redis-py 5 leaves a plain ResponseError.
            if isinstance(exc, _MOVED_ERRORS) or str(exc).startswith(_MOVED_AWAY):
                self._moved()
                await self.disconnect()
            raise
        except (RedisConnectionError, OSError):
            self._moved()
            raise

    def _moved(self) -> None:
        if self.on_moved is not None:
            self.on_moved()


class _SlotSSLConnection(_SlotConnection, SSLConnection):
    """The same, over TLS."""


class _SlotOwnerPool(BlockingConnectionPool):
    """A bounded, waiting pool to the cluster master that owns one hash slot.

    The owner is found when a connection is first needed, and found again
    (one lookup at a time) after a connection to it fails or answers
    ``MOVED``: the pool's connections are then pointed at the new owner.
    Without a ``route_key``, the startup nodes are used in turn.
    """

    def __init__(self, target: RedisUrl, route_key: str | None, **kwargs: Any) -> None:
        host, port = target.nodes[next(_rotation) % len(target.nodes)]
        kwargs["connection_class"] = _SlotSSLConnection if target.tls else _SlotConnection
        super().__init__(
            host=host, port=port, username=target.username, password=target.password, **kwargs
        )
        self._target = target
        self._route_key = route_key
        self._stale = route_key is not None
        self._resolving = asyncio.Lock()

    def make_connection(self) -> Any:
        connection = super().make_connection()  # type: ignore[no-untyped-call,unused-ignore]
        connection.on_moved = self._mark_stale
        connection.before_connect = self._aim
        return connection

    async def _aim(self, connection: Any) -> None:
        """Point ``connection`` at the slot's owner (found first if stale)."""
        if self._stale:
            async with self._resolving:
                if self._stale:
                    await self._point_at(await self._owner())
        connection.host = self.connection_kwargs["host"]
        connection.port = self.connection_kwargs["port"]

    def _mark_stale(self) -> None:
        self._stale = self._route_key is not None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._stale:
            async with self._resolving:
                if self._stale:
                    await self._point_at(await self._owner())
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        except (RedisConnectionError, OSError):
            self._stale = self._route_key is not None
            raise

    async def _point_at(self, owner: tuple[str, int]) -> None:
        """Send this pool's connections, present and future, to ``owner``."""
        host, port = owner
        self._stale = False
        if (self.connection_kwargs.get("host"), self.connection_kwargs.get("port")) == owner:
            return
        self.connection_kwargs["host"], self.connection_kwargs["port"] = host, port
        for name in ("_available_connections", "_in_use_connections", "_connections"):
            for connection in list(getattr(self, name, None) or ()):
                if connection is not None and hasattr(connection, "host"):
                    connection.host, connection.port = host, port
                    if name == "_available_connections":
                        await connection.disconnect()

    async def _owner(self) -> tuple[str, int]:
        assert self._route_key is not None
        slot = key_slot(self._route_key.encode())
        kwargs: dict[str, Any] = {
            k: v
            for k, v in self.connection_kwargs.items()
            if k in ("username", "password", "socket_connect_timeout")
        }
        kwargs["socket_timeout"] = kwargs.get("socket_connect_timeout") or 2.0
        if self._target.tls:
            kwargs["ssl"] = True
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
            owner = slot_owner_of(ranges, slot)
            if owner is not None:
                return owner
        raise RedisConnectionError(f"no cluster node could say who owns slot {slot}") from failure


def slot_owner_of(ranges: Any, slot: int) -> tuple[str, int] | None:
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
