"""Handshakes in flight: the one place that hands out (and counts) pending-handshake slots.

A handshake costs the server before it has proven anything: verifying a
token may wait on a JWKS fetch or a store, a ``/ws`` socket may wait for its
auth message, an Engine.IO session may wait for its CONNECT. Each of those
holds one slot from the moment it starts until it is admitted or gone, so a
flood of handshakes is refused early instead of piling up work.

Two caps: ``total`` for the whole server, and ``per_address`` for one client
address, so that one address holding its share open cannot lock everybody
else out. IPv6 clients are counted per /64, the block one subscriber gets
(one host can use any address in it). Behind ``trusted_proxies`` the
forwarded address is the one counted (uvicorn rewrites the ASGI ``client``).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from functools import lru_cache

from wsgate.codes import Code
from wsgate.errors import ConnectionRefused
from wsgate.metrics import Metrics

__all__ = ["HandshakeSlot", "HandshakeSlots", "address_key"]

IPV6_PREFIX = 64
"""IPv6 addresses are counted per network of this length (a subscriber's allocation)."""


@lru_cache(maxsize=1024)
def address_key(remote: str | None) -> str:
    """The key one client address is counted under (its /64 for IPv6).

    Memoised (a pure function): every connect asks, and ``ipaddress`` parsing
    was ~1% of a connect's CPU; clients reconnect from the same addresses.
    """
    if not remote:
        return "?"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]  # a unix socket path or a name: counted as it is, bounded
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


class HandshakeSlot:
    """One pending handshake; :meth:`release` gives the slot back (idempotent)."""

    __slots__ = ("_key", "_owner")

    def __init__(self, owner: HandshakeSlots, key: str) -> None:
        self._owner: HandshakeSlots | None = owner
        self._key = key

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._give_back(self._key)

    @property
    def held(self) -> bool:
        return self._owner is not None

    def __enter__(self) -> HandshakeSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class HandshakeSlots:
    """At most ``total`` handshakes in flight, and at most ``per_address`` from one address."""

    def __init__(self, total: int, per_address: int, metrics: Metrics) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("handshake limits must be at least 1")
        self.total = total
        self.per_address = per_address
        self.pending = 0
        self._metrics = metrics
        self._by_address: Counter[str] = Counter()

    def take(self, remote: str | None) -> HandshakeSlot:
        """A slot for a handshake from ``remote``, or :class:`ConnectionRefused` past a cap."""
        key = address_key(remote)
        if self.pending >= self.total:
            self._metrics.limit_hits.labels("handshakes").inc()
            raise ConnectionRefused(
                Code.TOO_MANY_CONNECTIONS, "Server busy; try again", "max_pending_handshakes"
            )
        if self._by_address[key] >= self.per_address:
            self._metrics.limit_hits.labels("handshakes_per_address").inc()
            raise ConnectionRefused(
                Code.TOO_MANY_CONNECTIONS,
                "Too many handshakes from this address; try again",
                "max_pending_handshakes_per_address",
            )
        self.pending += 1
        self._by_address[key] += 1
        self._metrics.pending_handshakes.inc()
        return HandshakeSlot(self, key)

    def from_address(self, remote: str | None) -> int:
        """Handshakes in flight from ``remote``'s address (or network)."""
        return self._by_address.get(address_key(remote), 0)

    def _give_back(self, key: str) -> None:
        self.pending -= 1
        left = self._by_address[key] - 1
        if left > 0:
            self._by_address[key] = left
        else:
            del self._by_address[key]
        self._metrics.pending_handshakes.dec()
