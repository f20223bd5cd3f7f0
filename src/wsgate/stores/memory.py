"""In-process revocations: for tests and single-process apps that accept losing them on restart.

Nothing is shared with other processes, so a ``wsgate revoke`` run from a
shell never reaches a server using this store; use the SQLite or Redis store
for that.
"""

from __future__ import annotations

import asyncio
import time

from wsgate.stores.revocation import (
    Revocation,
    RevocationKind,
    RevocationWatch,
    StoreUnavailable,
    check_time,
    check_value,
    revocation_time,
)


class MemoryRevocationStore:
    """Revocations in two dicts, announced to watchers through per-watch queues.

    One entry per ``jti`` and per ``sub`` is enough: a later ``sub``
    revocation covers every token an earlier one did, so entries are merged
    by keeping the latest ``revoked_at`` and the latest ``expires_at``.
    Memory grows with revocations until :meth:`purge_expired` runs.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[RevocationKind, str], Revocation] = {}
        self._watches: set[_MemoryWatch] = set()
        self._closed = False

    async def revoke_jti(self, jti: str, *, expires_at: float) -> Revocation:
        return self._revoke("jti", check_value(jti, "jti"), time.time(), expires_at)

    async def revoke_sub(
        self, sub: str, *, expires_at: float, at: float | None = None
    ) -> Revocation:
        when = revocation_time() if at is None else check_time(at, "at")
        return self._revoke("sub", check_value(sub, "sub"), when, expires_at)

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        self._check_open()
        now = time.time()
        keys: list[tuple[RevocationKind, str]] = [("sub", sub)]
        if jti is not None:
            keys.append(("jti", jti))
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.is_expired(now):
                del self._entries[key]
            elif entry.concerns(sub=sub, jti=jti, issued_at=issued_at):
                return True
        return False

    async def purge_expired(self, now: float | None = None) -> int:
        self._check_open()
        cutoff = time.time() if now is None else check_time(now, "now")
        expired = [key for key, entry in self._entries.items() if entry.is_expired(cutoff)]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def watch(self) -> RevocationWatch:
        self._check_open()
        return _MemoryWatch(self)

    async def aclose(self) -> None:
        self._closed = True
        for watch in list(self._watches):
            watch.end()
        self._watches.clear()

    def _revoke(
        self, kind: RevocationKind, value: str, revoked_at: float, expires_at: float
    ) -> Revocation:
        self._check_open()
        revocation = Revocation(kind, value, revoked_at, check_time(expires_at, "expires_at"))
        previous = self._entries.get((kind, value))
        stored = revocation
        if previous is not None:
            stored = Revocation(
                kind,
                value,
                max(previous.revoked_at, revoked_at),
                max(previous.expires_at, revocation.expires_at),
            )
        self._entries[(kind, value)] = stored
        for watch in self._watches:
            watch.deliver(revocation)
        return revocation

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")


class _MemoryWatch(RevocationWatch):
    """A queue registered with the store; ``None`` in the queue means the store closed."""

    def __init__(self, store: MemoryRevocationStore) -> None:
        self._store = store
        self._queue: asyncio.Queue[Revocation | None] = asyncio.Queue()
        # Registered at creation, not at start: subscribing is free here, and
        # nothing revoked after watch() returned can then be missed.
        store._watches.add(self)

    def deliver(self, revocation: Revocation) -> None:
        self._queue.put_nowait(revocation)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def _start(self) -> None:
        return None

    async def _next(self) -> Revocation | None:
        return await self._queue.get()

    async def _close(self) -> None:
        self._store._watches.discard(self)
