"""Every Redis key and channel wsgate uses, named in one place.

Why one module: two deployments sharing one Redis server must never see each
other (pub/sub ignores the database number, so ``db 0`` and ``db 1`` share
every channel), and Redis Cluster needs every key of one multi-key call in
the same hash slot. Both hold if, and only if, every name starts with the
same hash-tagged prefix, ``{<prefix>}:``; a module that names all of them is
the only way to keep that true as features are added.

Layout (``P`` is the prefix):

==============================  ===========================================
``{P}:revoked:jti:<jti>``       revocation of one token (string, TTL)
``{P}:revoked:sub:<sub>``       revocation of every token of a user
``{P}:revocations``             pub/sub channel announcing revocations
``{P}:conns:<sub>``             sorted set: a user's connection leases
``{P}:fanout``                  stream: broadcasts between nodes
``{P}:node:<node_id>``          channel addressed to one node (remote ops)
``{P}:<part>:<part>...``        anything else, through :meth:`RedisKeys.name`
==============================  ===========================================

The default prefix is derived from nothing secret: ``wsgate.db<N>``, ``N``
the database number of the URL, so two deployments on different databases
of one server are apart without configuring anything. Set ``redis_prefix``
to run two deployments on the same database (or on a Cluster, which has
only database 0).

This module imports nothing from redis-py: it is pure naming, shared by
every Redis store (and safe to use from tests and tools).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qs, urlsplit

PREFIX_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
"""What a prefix may hold: no braces (they would break the hash tag), no spaces."""

_PREFIX_RE = re.compile(PREFIX_PATTERN)

KeyKind = Literal["jti", "sub"]


def database_of(url: str) -> int:
    """The database number a Redis URL selects (0 when it names none).

    Reads ``?db=N`` first, then the last numeric path segment
    (``redis://h/3``, ``redis+sentinel://h/service/3``). Nothing else of the
    URL (host, user, password) is used.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "db" in query:
        try:
            return int(query["db"][0])
        except ValueError:
            return 0
    if parts.scheme in {"unix", "file"}:
        return 0
    for segment in reversed([s for s in parts.path.split("/") if s]):
        if segment.isdigit():
            return int(segment)
        break
    return 0


def default_prefix(url: str) -> str:
    """``wsgate.db<N>``: distinct per database, derived from nothing secret."""
    return f"wsgate.db{database_of(url)}"


def check_prefix(prefix: str) -> str:
    """``prefix`` itself, or ValueError when it cannot make a safe hash tag."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            "redis_prefix must be 1-64 characters of letters, digits and _ . : / - (no braces)"
        )
    return prefix


class RedisKeys:
    """Names of one deployment's keys and channels, all in one Cluster hash slot.

    The API is stable (other stores build on it): add methods, do not
    change what existing ones return.
    """

    __slots__ = ("base", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self.base = "{" + prefix + "}:"
        """``{prefix}:``: the start of every name."""

    @classmethod
    def for_url(cls, url: str, prefix: str | None = None) -> RedisKeys:
        """``prefix``, or the default derived from ``url``'s database number."""
        return cls(prefix if prefix else default_prefix(url))

    def name(self, *parts: str) -> str:
        """``{prefix}:a:b:...``: any further key or channel of this deployment."""
        if not parts:
            raise ValueError("a key needs at least one part")
        return self.base + ":".join(parts)

    def revoked(self, kind: KeyKind, value: str) -> str:
        """The revocation entry of a ``jti`` or of a ``sub``."""
        return f"{self.base}revoked:{kind}:{value}"

    @property
    def revocations_channel(self) -> str:
        """Pub/sub channel on which every revocation is announced."""
        return f"{self.base}revocations"

    def conns(self, sub: str) -> str:
        """Sorted set of ``sub``'s connection leases across nodes."""
        return f"{self.base}conns:{sub}"

    @property
    def fanout_stream(self) -> str:
        """Stream carrying broadcasts between nodes."""
        return f"{self.base}fanout"

    def node_channel(self, node_id: str) -> str:
        """Channel addressed to one node (requests of remote operations)."""
        return f"{self.base}node:{node_id}"

    def owns(self, name: str) -> bool:
        """True when ``name`` belongs to this deployment."""
        return name.startswith(self.base)

    def __repr__(self) -> str:
        return f"RedisKeys({self.prefix!r})"
