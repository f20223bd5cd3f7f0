"""Revocations in a SQLite file: the embedded default, shared with ``wsgate revoke``.

The file survives restarts and is shared by every process that opens it (the
server and the CLI), which is all a single node needs. Other processes' writes
are noticed by polling ``PRAGMA data_version`` on a watch's own connection: a
cheap check that changes only when another connection committed, so rows are
read only after a write. A revocation therefore reaches watchers within
``poll_interval`` (0.25 s by default) plus one query.

While a watch is live, the store also keeps every active revocation in
memory (:class:`RevocationMirror`) and answers :meth:`is_revoked` from it,
without a query or a hop to the store's thread: the connect path asked
SQLite once per handshake, which was 12% of the server's CPU under a
handshake storm (issue 5). The mirror is loaded when a watch subscribes,
grows with every row the watch reads and with this store's own writes (at
once, before ``revoke_*`` returns), and is trusted only while a watch has
polled successfully within the last ``mirror_stale_after`` seconds; whenever
that is not so (no watch, a watch that failed or closed, a consumer that
stopped reading), lookups go to SQLite again and fail closed with it.

Nor is the mirror believed once the database files changed since the
watch's last poll (:func:`files_fingerprint`: the size and modification time
of the file and its write-ahead log, two ``stat`` calls on the event loop):
a commit by any process, ``wsgate revoke`` included, writes to them before
it is visible, so a lookup after it goes to SQLite until the next poll has
read it. Without this, a token revoked by another process was still
admitted for up to ``poll_interval`` (and a recovered Socket.IO session got
its missed messages replayed before the follower cut it). Other tables in
the same file (the demo's users) send lookups to SQLite a little more often;
correctness does not depend on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections import deque

from wsgate.stores.revocation import (
    Revocation,
    RevocationKind,
    RevocationWatch,
    StoreUnavailable,
    check_time,
)
from wsgate.stores.sqlite_thread import DEFAULT_BUSY_TIMEOUT, SqliteThreadStore, connect

DEFAULT_POLL_INTERVAL = 0.25

Fingerprint = tuple[tuple[int, int] | None, tuple[int, int] | None]
"""(size, mtime_ns) of the database file and of its ``-wal`` file (None: no such file)."""


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def files_fingerprint(path: str) -> Fingerprint:
    """What any commit to the database at ``path`` changes before it is visible.

    In WAL mode a commit appends to ``-wal``; otherwise it writes the file
    itself. Raises :class:`OSError` when the files cannot be looked at.
    """
    return _stat(path), _stat(path + "-wal")


DEFAULT_MIRROR_STALE_AFTER = 1.0
"""Seconds after a watch's last successful poll that the in-memory mirror is still trusted."""

# Prefixed names, so the file can also hold the users table and an app's own
# tables. AUTOINCREMENT matters: ids are never reused after a purge, so a
# watch that read up to id N can never miss a later row that got a recycled id.
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS wsgate_revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('jti', 'sub')),
    value TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS wsgate_revocations_lookup ON wsgate_revocations (kind, value);
CREATE INDEX IF NOT EXISTS wsgate_revocations_expiry ON wsgate_revocations (expires_at);
COMMIT;
"""

_ACTIVE_UP_TO = """
SELECT id, kind, value, revoked_at, expires_at FROM wsgate_revocations
WHERE id <= ? AND expires_at >= ?
"""

_IS_REVOKED = """
SELECT EXISTS (
    SELECT 1 FROM wsgate_revocations
    WHERE kind = 'sub' AND value = :sub AND expires_at >= :now
      AND (:iat IS NULL OR :iat < revoked_at)
) OR EXISTS (
    SELECT 1 FROM wsgate_revocations
    WHERE kind = 'jti' AND value = :jti AND expires_at >= :now
)
"""


class RevocationMirror:
    """Active revocations in memory, answering :meth:`is_revoked` as ``_IS_REVOKED`` does.

    Only ever grows (a union of what was loaded, polled and written here),
    apart from :meth:`prune` dropping expired entries; whether it may be
    believed is the store's decision (:attr:`fresh_until`).
    """

    __slots__ = ("_jti", "_sub", "fingerprint", "fresh_until")

    def __init__(self) -> None:
        self._jti: dict[str, float] = {}  # jti -> latest expires_at
        self._sub: dict[str, set[tuple[float, float]]] = {}  # sub -> {(revoked_at, expires_at)}
        self.fresh_until = 0.0  # time.monotonic() deadline; 0 = do not trust
        self.fingerprint: Fingerprint | None = None  # the files as the last poll saw them

    def add(self, revocation: Revocation) -> None:
        if revocation.kind == "jti":
            known = self._jti.get(revocation.value)
            if known is None or known < revocation.expires_at:
                self._jti[revocation.value] = revocation.expires_at
        else:
            entries = self._sub.setdefault(revocation.value, set())
            entries.add((revocation.revoked_at, revocation.expires_at))

    def is_revoked(self, sub: str, jti: str | None, issued_at: float | None, now: float) -> bool:
        if jti is not None:
            expires_at = self._jti.get(jti)
            if expires_at is not None and expires_at >= now:
                return True
        for revoked_at, expires_at in self._sub.get(sub, ()):
            if expires_at >= now and (issued_at is None or issued_at < revoked_at):
                return True
        return False

    def prune(self, now: float) -> None:
        """Forget entries that expired before ``now``."""
        self._jti = {jti: exp for jti, exp in self._jti.items() if exp >= now}
        subs: dict[str, set[tuple[float, float]]] = {}
        for sub, entries in self._sub.items():
            alive = {entry for entry in entries if entry[1] >= now}
            if alive:
                subs[sub] = alive
        self._sub = subs


class SqliteRevocationStore(SqliteThreadStore):
    """Revocations as rows of ``wsgate_revocations``, one row per revocation.

    Rows are only ever inserted (and purged once expired), which makes the
    table a log that watches read by increasing id.
    """

    _thread_name = "wsgate-revocations"
    _what = "revocation store"
    _schema = _SCHEMA

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        mirror_stale_after: float = DEFAULT_MIRROR_STALE_AFTER,
    ) -> None:
        file = os.fspath(path)
        if file in ("", ":memory:") or file.startswith("file:"):
            # Watches use their own connection, which would see another database.
            raise ValueError("SqliteRevocationStore needs a file path")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be positive")
        if not mirror_stale_after >= 0:
            raise ValueError("mirror_stale_after must be zero (no mirror) or positive")
        super().__init__(file, busy_timeout)
        self.poll_interval = poll_interval
        self.mirror_stale_after = mirror_stale_after
        self._mirror = RevocationMirror()  # read and written on the event loop only
        self._watches: set[_SqliteWatch] = set()
        self._closing = asyncio.Event()

    async def revoke_jti(self, jti: str, *, expires_at: float) -> Revocation:
        revocation = Revocation.of_jti(jti, expires_at=expires_at)
        await self._call(self._insert, revocation)
        self._mirror.add(revocation)
        return revocation

    async def revoke_sub(
        self, sub: str, *, expires_at: float, at: float | None = None
    ) -> Revocation:
        revocation = Revocation.of_sub(sub, expires_at=expires_at, at=at)
        await self._call(self._insert, revocation)
        self._mirror.add(revocation)
        return revocation

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")
        mirror = self._mirror
        if time.monotonic() < mirror.fresh_until and self._unchanged_since_poll():
            return mirror.is_revoked(sub, jti, issued_at, time.time())
        return await self._call(self._is_revoked, sub, jti, issued_at)

    def _unchanged_since_poll(self) -> bool:
        """True when no commit touched the files since the mirror's last poll."""
        try:
            return files_fingerprint(self._path) == self._mirror.fingerprint
        except OSError:
            return False

    @property
    def mirror_live(self) -> bool:
        """True while :meth:`is_revoked` answers from memory (a watch is live and current)."""
        return not self._closed and time.monotonic() < self._mirror.fresh_until

    async def purge_expired(self, now: float | None = None) -> int:
        cutoff = time.time() if now is None else check_time(now, "now")
        purged = await self._call(self._purge, cutoff)
        self._mirror.prune(cutoff)
        return purged

    def watch(self) -> RevocationWatch:
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")
        return _SqliteWatch(self)

    async def aclose(self) -> None:
        if not self._closed:
            # Set with the flag (the base sets it before its first await):
            # from now on lookups skip the mirror and watches stop waiting.
            self._mirror.fresh_until = 0.0
            self._closing.set()
        await super().aclose()

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # Everything below runs on the store thread.

    def _insert(self, revocation: Revocation) -> None:
        self._db().execute(
            "INSERT INTO wsgate_revocations (kind, value, revoked_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (revocation.kind, revocation.value, revocation.revoked_at, revocation.expires_at),
        )

    def _is_revoked(self, sub: str, jti: str | None, issued_at: float | None) -> bool:
        params = {"sub": sub, "jti": jti, "iat": issued_at, "now": time.time()}
        return bool(self._db().execute(_IS_REVOKED, params).fetchone()[0])

    def _purge(self, cutoff: float) -> int:
        cursor = self._db().execute(
            "DELETE FROM wsgate_revocations WHERE expires_at < ?", (cutoff,)
        )
        return cursor.rowcount

    def _close(self) -> None:
        for watch in list(self._watches):
            watch.close_connection()
        self._watches.clear()
        super()._close()


def _row_to_revocation(row: tuple[int, str, str, float, float]) -> Revocation:
    _, kind, value, revoked_at, expires_at = row
    checked: RevocationKind = "jti" if kind == "jti" else "sub"  # the CHECK constraint holds
    return Revocation(checked, value, revoked_at, expires_at)


class _SqliteWatch(RevocationWatch):
    """Polls ``PRAGMA data_version`` on its own connection; reads rows past the last id seen."""

    def __init__(self, store: SqliteRevocationStore) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = None  # used on the store thread only
        self._version = 0
        self._last_id = 0
        self._pending: deque[Revocation] = deque()

    async def _start(self) -> None:
        store = self._store
        try:
            active, fingerprint = await store._call(self._open)
        except StoreUnavailable:
            store._mirror.fresh_until = 0.0
            raise
        for revocation in active:
            store._mirror.add(revocation)
        self._vouch(fingerprint)

    async def _next(self) -> Revocation | None:
        store = self._store
        while not self._pending:
            if store._closed:
                return None
            try:
                fresh, fingerprint = await store._call(self._poll)
            except StoreUnavailable:
                store._mirror.fresh_until = 0.0  # blind now: lookups go to SQLite
                raise
            for revocation in fresh:
                store._mirror.add(revocation)
            self._vouch(fingerprint)
            self._pending.extend(fresh)
            if not self._pending:
                await store._sleep_unless_closing(store.poll_interval)
        return self._pending.popleft()

    def _vouch(self, fingerprint: Fingerprint | None) -> None:
        """Everything committed before this poll is in the mirror: trust it for a while.

        ...while the files still look as they did during the poll
        (``fingerprint``; None when a commit landed during the poll itself,
        so that lookups go to SQLite until the next one).
        """
        store = self._store
        if not store._closed:
            store._mirror.fingerprint = fingerprint
            store._mirror.fresh_until = time.monotonic() + store.mirror_stale_after

    async def _close(self) -> None:
        self._store._mirror.fresh_until = 0.0
        if self._conn is not None and not self._store._closed:
            with contextlib.suppress(StoreUnavailable):
                await self._store._call(self._unregister)

    # Below: on the store thread.

    def _open(self) -> tuple[list[Revocation], Fingerprint | None]:
        """Subscribe; the revocations active now (ids up to where polling starts).

        And the files' fingerprint, taken before and after the reads: equal,
        it stands for what was read; else a commit raced the reads (None).
        """
        self._store._db()  # the table exists before this connection reads it
        conn = connect(self._store._path, self._store._busy_timeout)
        try:
            before = self._fingerprint()
            # Version first: a commit landing between the two reads is then
            # either counted in max(id) or seen by the next poll, never lost.
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._last_id = conn.execute(
                "SELECT coalesce(max(id), 0) FROM wsgate_revocations"
            ).fetchone()[0]
            rows = conn.execute(_ACTIVE_UP_TO, (self._last_id, time.time())).fetchall()
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        self._store._watches.add(self)
        return [_row_to_revocation(row) for row in rows], self._settled(before)

    def _poll(self) -> tuple[list[Revocation], Fingerprint | None]:
        if self._conn is None:
            return [], None
        before = self._fingerprint()
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return [], self._settled(before)
        self._version = version
        rows = self._conn.execute(
            "SELECT id, kind, value, revoked_at, expires_at FROM wsgate_revocations"
            " WHERE id > ? ORDER BY id",
            (self._last_id,),
        ).fetchall()
        if rows:
            self._last_id = rows[-1][0]
        return [_row_to_revocation(row) for row in rows], self._settled(before)

    def _fingerprint(self) -> Fingerprint | None:
        try:
            return files_fingerprint(self._store._path)
        except OSError:
            return None

    def _settled(self, before: Fingerprint | None) -> Fingerprint | None:
        """``before`` if no commit touched the files while this poll read them, else None."""
        return before if before is not None and self._fingerprint() == before else None

    def _unregister(self) -> None:
        self._store._watches.discard(self)
        self.close_connection()

    def close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
