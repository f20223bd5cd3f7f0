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

import bisect
import math
import time
from collections import Counter
from typing import Protocol

BURST_FACTOR = 2
"""A client may send ``BURST_FACTOR`` seconds' worth of events at once."""


class EventRateLimiter:
    """``rate`` events per second per connection, with a burst of twice that.

    A moving window of ``2 * rate`` events over 2 seconds: an event is
    allowed when fewer than ``2 * rate`` events of the same connection were
    allowed in the 2 seconds before it, so a quiet client may send a burst
    of ``2 * rate`` at once and no client sustains more than ``rate`` per
    second. Refused events are not counted.

    Written here rather than taken from the ``limits`` library, which this
    class used until issue 5's profile (its ``MovingWindowRateLimiter``, the
    same rule): its in-memory storage starts a new OS thread every 10 ms
    while events arrive, and each one walks every connection's window under
    per-key locks, competing with the event loop for the GIL; its asyncio
    storage sends every key to a worker thread instead. Both made the check,
    on every event, several microseconds plus that background churn. This is
    the same rule on a sorted list of timestamps per connection, pruned as
    it is read: a ``bisect`` and an ``append`` per event, no thread, no
    timer, and memory only for connections that sent events recently
    (:meth:`forget` drops a closed connection's list).
    """

    __slots__ = ("_amount", "_hits", "_window")

    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a positive number of events per second")
        self._amount = max(1, round(rate * BURST_FACTOR))
        self._window = float(BURST_FACTOR)
        self._hits: dict[str, list[float]] = {}

    def allow(self, conn_id: str) -> bool:
        """Count one event of ``conn_id``; False when it is over the limit (and not counted)."""
        now = time.monotonic()
        hits = self._hits.get(conn_id)
        if hits is None:
            self._hits[conn_id] = [now]
            return True
        # Timestamps older than the window no longer count (limits' rule:
        # an entry counts while ``entry >= now - window``).
        expired = bisect.bisect_left(hits, now - self._window)
        if expired:
            del hits[:expired]
        if len(hits) >= self._amount:
            return False
        hits.append(now)
        return True

    def tracked(self) -> int:
        """How many connections hold a window (memory must follow live connections)."""
        return len(self._hits)

    def forget(self, conn_id: str) -> None:
        """Drop a closed connection's window, so memory follows live connections only."""
        self._hits.pop(conn_id, None)


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
