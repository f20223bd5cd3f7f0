"""Connection-state recovery: a Socket.IO client that comes back soon gets what it missed.

The feature is Socket.IO v4's ``connectionStateRecovery``: the CONNECT
answer carries a private session id ``pid``, every broadcast EVENT carries
an offset as its last argument, and a client that reconnects with
``auth = {pid, offset}`` within the window gets its rooms back and the
broadcasts it missed, in order, once (socket.io-client >= 4.6 does this by
itself and sets ``socket.recovered``).

What wsgate does differently from Socket.IO's own, and why:

- recovery runs *after* the normal admission (origin, token signature and
  expiry, revocation, connect roles and guards, the per-user cap). Socket.IO
  can skip its connect middleware for a recovered socket (socket.io issue
  #5491), so a revoked or expired token would get its messages replayed;
  here it gets its ordinary refusal and nothing else;
- a saved session is bound to the ``sub`` and namespace of the connection
  that left it: a ``pid`` presented with another user's token recovers
  nothing (and leaves that user's session in place);
- everything is bounded: the window (``recovery_window`` seconds), the
  packets kept (``recovery_max_packets`` and ``recovery_max_bytes``) and the
  saved sessions (:data:`MAX_SAVED_SESSIONS`). A client past a bound is not
  recovered; it connects as a new session (``recovered`` false), as
  Socket.IO's clients expect.

Where the state lives:

- on one node, here: a log of every broadcast this node delivered, and the
  saved sessions, in memory;
- with Redis (:class:`SharedRecovery`, implemented by
  :class:`wsgate.stores.redis_recovery.RedisRecoveryStore`): offsets are ids
  of the fan-out stream, missed broadcasts are read back from it, and saved
  sessions are Redis keys, so a client dropped by one node recovers through
  any other.

The ``pid`` is a bearer secret of 128 random bits (``secrets``); it is never
logged and kept out of the connection's ``repr``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from wsgate.codes import CloseReason
from wsgate.core.connection import Connection, room_key
from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.recovery")

__all__ = [
    "MAX_SAVED_SESSIONS",
    "RECOVERABLE",
    "Missed",
    "Recovery",
    "Saved",
    "SharedRecovery",
]

MAX_SAVED_SESSIONS = 100_000
"""Sessions kept for recovery at once on a node; past it the oldest is forgotten."""

RECOVERABLE = frozenset({CloseReason.TRANSPORT_CLOSE, CloseReason.SERVER_SHUTDOWN})
"""Why a connection may end and still be recovered: the network, not a decision.

A client that disconnected on purpose, or a connection the server closed
(revoked, expired, kicked, too slow, too large), leaves nothing to recover.
"""


@dataclass(frozen=True, slots=True)
class Missed:
    """One broadcast to replay: what the client gets, with its offset as the last argument."""

    event: str
    data: Any
    offset: str


class SharedRecovery(Protocol):
    """Saved sessions and the broadcast log shared by every node (Redis)."""

    async def save(self, pid: str, sub: str, namespace: str, body: str, ttl: float) -> None: ...

    async def take(self, pid: str, sub: str, namespace: str) -> str | None:
        """The body saved under ``pid``, removed, when it is ``sub``'s on ``namespace``."""
        ...

    async def since(
        self, offset: str, limit: int, max_bytes: int
    ) -> list[tuple[str, str, str, Any, str | None, str | None]] | None:
        """(offset, namespace, event, data, room, skip) after ``offset``; None past a bound."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    namespace: str
    event: str
    data: Any
    room: str | None
    skip: str | None
    size: int


@dataclass(frozen=True, slots=True)
class Saved:
    """A session taken back: whose it was, its old connection id, its rooms (user names)."""

    sub: str
    namespace: str
    conn_id: str
    rooms: frozenset[str]
    until: float = 0.0


class Recovery:
    """The node's packet log and saved sessions; inert when ``window`` is 0."""

    def __init__(
        self,
        *,
        window: float,
        max_packets: int = 1000,
        max_bytes: int = 4_000_000,
        max_sessions: int = MAX_SAVED_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedRecovery | None = None,
    ) -> None:
        self.window = window
        self.shared = shared
        """Where sessions and broadcasts are kept for every node (None: in this one)."""
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.max_sessions = max_sessions
        self._clock = clock
        self._log: deque[_Entry] = deque()
        self._bytes = 0
        # Offsets start at a random point, so that an offset a client kept from
        # before a restart is, in all likelihood, simply unknown.
        self._seq = secrets.randbits(40)
        self._saved: OrderedDict[str, Saved] = OrderedDict()
        self.recovered = 0
        """Sessions recovered on this node."""
        self.refused = 0
        """Recovery attempts that found no session, a foreign one, an expired one or a gap."""

    @property
    def enabled(self) -> bool:
        return self.window > 0

    # -- the log ------------------------------------------------------------------------

    def record(
        self, namespace: str, event: str, data: Any, room: str | None, skip: str | None
    ) -> str | None:
        """Log one broadcast this node delivers; its offset (None when off, or shared)."""
        if self.window <= 0 or self.shared is not None:
            return None
        self._seq += 1
        size = _size(event, data)
        log = self._log
        log.append(_Entry(self._seq, namespace, event, data, room, skip, size))
        self._bytes += size
        while log and (len(log) > self.max_packets or self._bytes > self.max_bytes):
            self._bytes -= log.popleft().size
        return str(self._seq)

    def _since(self, offset: str) -> list[_Entry] | None:
        """Entries after ``offset``, or None when some of them are gone (or it is unknown)."""
        if not offset.isdigit() or len(offset) > 20:
            return None
        seq = int(offset)
        if seq > self._seq:
            return None
        first = self._log[0].seq if self._log else self._seq + 1
        if seq < first - 1:
            return None  # what came right after it was evicted: a gap
        start = seq - first + 1
        return [self._log[i] for i in range(start, len(self._log))]

    # -- sessions -----------------------------------------------------------------------

    @staticmethod
    def new_pid() -> str:
        """A fresh private session id: 128 random bits, URL-safe."""
        return secrets.token_urlsafe(16)

    async def save(self, connection: Connection, pid: str) -> None:
        """Keep what ``connection`` needs to be recovered under ``pid``, for ``window`` seconds.

        Best effort: when Redis cannot take it, the client will simply not be
        recovered (it connects as a new one).
        """
        if self.window <= 0:
            return
        sub, namespace = connection.principal.sub, connection.namespace
        if self.shared is not None:
            body = json.dumps({"conn": connection.id, "rooms": sorted(connection.rooms)})
            try:
                await self.shared.save(pid, sub, namespace, body, self.window)
            except StoreUnavailable:
                log.debug("a session could not be saved for recovery: Redis is unavailable")
            return
        now = self._clock()
        self._expire(now)
        saved = self._saved
        saved.pop(pid, None)
        saved[pid] = Saved(
            sub, namespace, connection.id, frozenset(connection.rooms), now + self.window
        )
        while len(saved) > self.max_sessions:
            saved.popitem(last=False)

    async def take(self, pid: str, *, sub: str, namespace: str) -> Saved | None:
        """Take the session ``pid`` back, or None: unknown, expired, or another user's.

        The session is removed only when it is handed back, so a ``pid``
        presented by another user (or on another namespace) cannot destroy
        it, and a ``pid`` is recovered at most once.
        """
        if self.shared is not None:
            try:
                body = await self.shared.take(pid, sub, namespace)
            except StoreUnavailable:
                body = None
            if body is None:
                self.refused += 1
                return None
            data = json.loads(body)
            return Saved(sub, namespace, str(data["conn"]), frozenset(map(str, data["rooms"])))
        self._expire(self._clock())
        saved = self._saved.get(pid)
        if saved is None or saved.sub != sub or saved.namespace != namespace:
            self.refused += 1
            return None
        del self._saved[pid]
        return saved

    async def missed(self, saved: Saved, offset: str) -> tuple[Missed, ...] | None:
        """What ``saved`` missed since ``offset``, or None when some of it is gone (a gap).

        Call it after the connection entered the session's rooms again: a
        broadcast that arrives in between is then both live and replayed,
        which the transport sees by its offset, rather than lost.
        """
        if self.shared is not None:
            try:
                entries = await self.shared.since(offset, self.max_packets, self.max_bytes)
            except StoreUnavailable:
                entries = None
        else:
            local = self._since(offset)
            entries = (
                None
                if local is None
                else [(str(e.seq), e.namespace, e.event, e.data, e.room, e.skip) for e in local]
            )
        if entries is None:
            self.refused += 1
            return None
        keys = {room_key(room) for room in saved.rooms}
        self.recovered += 1
        return tuple(
            Missed(event, data, entry_offset)
            for entry_offset, namespace, event, data, room, skip in entries
            if namespace == saved.namespace
            and (room is None or room in keys)
            and skip != saved.conn_id
        )

    def _expire(self, now: float) -> None:
        saved = self._saved
        while saved:
            pid, first = next(iter(saved.items()))
            if first.until > now:
                break
            del saved[pid]

    @property
    def saved_sessions(self) -> int:
        return len(self._saved)

    @property
    def logged(self) -> tuple[int, int]:
        """(entries, bytes) in the log now."""
        return len(self._log), self._bytes


def _size(event: str, data: Any) -> int:
    """About the bytes an entry costs: its JSON size (binary parts counted by length)."""
    extra = 0

    def binary(value: Any) -> None:
        nonlocal extra
        if isinstance(value, bytes | bytearray | memoryview):
            extra += len(value)
            return
        raise TypeError

    try:
        return len(event) + len(orjson.dumps(data, default=binary)) + extra + 64
    except TypeError:
        return len(event) + len(repr(data)) + 64
