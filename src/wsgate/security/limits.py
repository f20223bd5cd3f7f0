"""Limits: event rate per connection, connections per user, message size.

Each limit is a small object with a yes/no question and a way to give back
what was taken; the core asks them, so every transport is limited alike.
Nothing here knows about sockets. (Handshakes in flight are counted by
:mod:`wsgate.core.handshakes`, which also reports them as metrics.)

The event rate is a property of one connection, which lives on one node, so
it stays in memory: sharing it through Redis would only add a round trip per
event. The connection count per user is :class:`ConnectionSlots`: in memory
(:class:`LocalConnectionSlots`, one node) by default, or shared by every node
through Redis (:class:`~wsgate.stores.redis_counter.RedisConnectionCounter`)
when ``redis_url`` is set.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Protocol

BURST_FACTOR = 2
"""A client may send ``BURST_FACTOR`` seconds' worth of events at once."""


class EventRateLimiter:
    """``rate`` events per second per connection, with a burst of twice that.

    A token bucket in its GCRA form (the Generic Cell Rate Algorithm of ATM
    networks, ITU-T I.371): each connection keeps one number, its
    *theoretical arrival time* (TAT), the instant its bucket would be full
    again. An event at ``now`` is allowed when ``TAT - now`` plus the
    event's own cost stays within the burst, and then pushes the TAT one
    emission interval (``1 / rate``) later. So "50/s, burst 100" means what
    it says: a quiet client may send 100 events at once, and right after
    that burst capacity comes back at 50 per second (one event every 20 ms),
    not after the whole burst has aged out of a window. Refused events do
    not move the TAT, so a flood that is refused costs its sender nothing
    more than waiting.

    It replaced (issue 11) a moving window of ``2 * rate`` timestamps per
    connection, which refused a client for a full 2 s after a burst and held
    up to ``2 * rate`` floats per connection. Before that the ``limits``
    library was used (its in-memory storage starts an OS thread every 10 ms
    while events arrive; its asyncio storage sends every key to a worker
    thread): both cost several microseconds per event plus background churn.
    GCRA is a few integer operations and one dict entry per connection,
    which is why it is written here rather than taken from a library.

    Time is counted in integer nanoseconds (``time.monotonic_ns``) so the
    arithmetic is exact: a float sum of a hundred 0.02 s intervals is not
    exactly 2.0, and a float bucket would let a burst of 100 through as 99.
    """

    __slots__ = ("_burst", "_interval", "_limit", "_tat")

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a positive number of events per second")
        if burst is None:
            burst = max(1, round(rate * BURST_FACTOR))
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._burst = burst
        # One event's cost; at least 1 ns so an absurd rate cannot make it free.
        self._interval = max(1, round(1_000_000_000 / rate))
        # How far ahead of now a connection's TAT may run: the whole bucket.
        self._limit = burst * self._interval
        self._tat: dict[str, int] = {}

    @property
    def burst(self) -> int:
        """Events a quiet connection may send at once."""
        return self._burst

    @property
    def interval_ns(self) -> int:
        """Nanoseconds after which one more event is allowed (``1 / rate``)."""
        return self._interval

    def allow(self, conn_id: str) -> bool:
        """Count one event of ``conn_id``; False when it is over the limit (and not counted)."""
        return self.allow_at(conn_id, time.monotonic_ns())

    def allow_at(self, conn_id: str, now_ns: int) -> bool:
        """:meth:`allow` at a given instant of the monotonic clock (tests drive the clock)."""
        tat = self._tat.get(conn_id, now_ns)
        if tat < now_ns:
            tat = now_ns  # a bucket does not fill past full
        new_tat = tat + self._interval
        if new_tat - now_ns > self._limit:
            return False
        self._tat[conn_id] = new_tat
        return True

    def tracked(self) -> int:
        """How many connections hold a TAT (memory must follow live connections)."""
        return len(self._tat)

    def forget(self, conn_id: str) -> None:
        """Drop a closed connection's TAT, so memory follows live connections only."""
        self._tat.pop(conn_id, None)


class ConnectionCounter:
    """Live connections per ``sub``: a user may hold at most ``limit`` on this node."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._counts: Counter[str] = Counter()

    def acquire(self, sub: str) -> bool:
        """Take a slot for ``sub``; False (nothing taken) when the user is at the limit."""
        if self._counts[sub] >= self.limit:
            return False
        self._counts[sub] += 1
        return True

    def release(self, sub: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        left = self._counts[sub] - 1
        if left > 0:
            self._counts[sub] = left
        else:
            del self._counts[sub]

    def count(self, sub: str) -> int:
        return self._counts.get(sub, 0)


class ConnectionSlots(Protocol):
    """Connections per ``sub``, as the runtime asks: one slot per admitted connection.

    ``acquire`` may raise :class:`~wsgate.stores.revocation.StoreUnavailable`
    when a shared count cannot be read; the runtime then refuses the
    connection (fail closed). ``release`` never raises.
    """

    limit: int

    async def acquire(self, sub: str, conn_id: str) -> bool:
        """Take a slot for connection ``conn_id`` of ``sub``; False when ``sub`` is at the limit."""
        ...

    async def release(self, sub: str, conn_id: str) -> None:
        """Give back the slot of ``conn_id`` (a no-op when it holds none)."""
        ...

    def start(self) -> None:
        """Start background work, if any; idempotent, called from a running loop."""
        ...

    async def aclose(self) -> None:
        """Stop background work, if any."""
        ...


class LocalConnectionSlots:
    """:class:`ConnectionSlots` on this node only: a :class:`ConnectionCounter`, no I/O.

    Its coroutines never suspend, so the connect and disconnect paths pay no
    event-loop round trip for them.
    """

    def __init__(self, limit: int) -> None:
        self.counter = ConnectionCounter(limit)
        self.limit = limit
        self._held: set[str] = set()

    async def acquire(self, sub: str, conn_id: str) -> bool:
        if conn_id in self._held:
            return True
        if not self.counter.acquire(sub):
            return False
        self._held.add(conn_id)
        return True

    async def release(self, sub: str, conn_id: str) -> None:
        if conn_id in self._held:
            self._held.discard(conn_id)
            self.counter.release(sub)

    def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def utf8_size_over(data: str | bytes, limit: int) -> bool:
    """True when ``data`` is more than ``limit`` bytes once UTF-8 encoded.

    A str is only encoded when its length cannot decide: ``len`` counts code
    points, and each is 1 to 4 bytes.
    """
    if isinstance(data, bytes):
        return len(data) > limit
    if len(data) > limit:
        return True
    if len(data) * 4 <= limit:
        return False
    return len(data.encode("utf-8", "surrogatepass")) > limit
