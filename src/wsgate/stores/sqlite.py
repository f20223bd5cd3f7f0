"""Revocations in a SQLite file: the embedded default, shared with ``wsgate revoke``.

The file survives restarts and is shared by every process that opens it (the
server and the CLI), which is all a single node needs. Other processes' writes
are noticed by polling ``PRAGMA data_version`` on a watch's own connection: a
cheap check that changes only when another connection committed, so rows are
read only after a write. A revocation therefore reaches watchers within
``poll_interval`` (0.25 s by default) plus one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from wsgate.stores.revocation import (
    Revocation,
    RevocationKind,
    RevocationWatch,
    StoreUnavailable,
    check_time,
    check_value,
)

log = logging.getLogger("wsgate.stores")

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_POLL_INTERVAL = 0.25
DEFAULT_BUSY_TIMEOUT = 5.0

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


class SqliteThread:
    """One worker thread that owns every sqlite3 connection of a store.

    Why not aiosqlite: it does the same thing (a thread per connection) as an
    extra dependency. Owning the thread lets a store's connections (its writer
    and its watches) share one thread, keeps sqlite3's ``check_same_thread``
    guard on, and serializes use of each connection without locks.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the thread and wait for its result without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        """Let the thread exit once queued work is done."""
        self._executor.shutdown(wait=False)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL and a busy timeout.

    WAL lets the server read while the CLI writes; the busy timeout
    (``timeout=`` sets SQLite's ``busy_timeout``) makes concurrent writers
    wait for each other instead of failing at once with "database is locked".
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error:
        conn.close()
        raise
    if mode != "wal" and path != ":memory:":
        log.warning(
            "SQLite file %s is not in WAL mode (%s): readers may wait on writers", path, mode
        )
    return conn


class SqliteRevocationStore:
    """Revocations as rows of ``wsgate_revocations``, one row per revocation.

    Rows are only ever inserted (and purged once expired), which makes the
    table a log that watches read by increasing id.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self._path = os.fspath(path)
        if self._path in ("", ":memory:") or self._path.startswith("file:"):
            # Watches use their own connection, which would see another database.
            raise ValueError("SqliteRevocationStore needs a file path")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be positive")
        self.poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._thread = SqliteThread("wsgate-revocations")
        self._conn: sqlite3.Connection | None = None  # used on self._thread only
        self._watches: set[_SqliteWatch] = set()
        self._closed = False
        self._closing = asyncio.Event()

    async def revoke_jti(self, jti: str, *, expires_at: float) -> Revocation:
        revocation = Revocation(
            "jti", check_value(jti, "jti"), time.time(), check_time(expires_at, "expires_at")
        )
        await self._call(self._insert, revocation)
        return revocation

    async def revoke_sub(
        self, sub: str, *, expires_at: float, at: float | None = None
    ) -> Revocation:
        revocation = Revocation(
            "sub",
            check_value(sub, "sub"),
            time.time() if at is None else check_time(at, "at"),
            check_time(expires_at, "expires_at"),
        )
        await self._call(self._insert, revocation)
        return revocation

    async def is_revoked(self, *, sub: str, jti: str | None, issued_at: float | None) -> bool:
        return await self._call(self._is_revoked, sub, jti, issued_at)

    async def purge_expired(self, now: float | None = None) -> int:
        cutoff = time.time() if now is None else check_time(now, "now")
        return await self._call(self._purge, cutoff)

    def watch(self) -> RevocationWatch:
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")
        return _SqliteWatch(self)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        try:
            await self._thread.run(self._close_all)
        finally:
            self._thread.shutdown()

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the store thread; any SQLite failure becomes :class:`StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable("the revocation store is closed")
        try:
            return await self._thread.run(fn, *args, **kwargs)
        except sqlite3.Error as exc:
            log.error("SQLite revocation store %s failed: %s", self._path, exc)
            raise StoreUnavailable("the SQLite revocation store cannot answer") from exc

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # Everything below runs on the store thread.

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self._path, self._busy_timeout)
            try:
                conn.executescript(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

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

    def _close_all(self) -> None:
        for watch in list(self._watches):
            watch.close_connection()
        self._watches.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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
        await self._store._call(self._open)

    async def _next(self) -> Revocation | None:
        while not self._pending:
            if self._store._closed:
                return None
            self._pending.extend(await self._store._call(self._poll))
            if not self._pending:
                await self._store._sleep_unless_closing(self._store.poll_interval)
        return self._pending.popleft()

    async def _close(self) -> None:
        if self._conn is not None and not self._store._closed:
            with contextlib.suppress(StoreUnavailable):
                await self._store._call(self._unregister)

    # Below: on the store thread.

    def _open(self) -> None:
        self._store._db()  # the table exists before this connection reads it
        conn = connect(self._store._path, self._store._busy_timeout)
        try:
            # Version first: a commit landing between the two reads is then
            # either counted in max(id) or seen by the next poll, never lost.
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._last_id = conn.execute(
                "SELECT coalesce(max(id), 0) FROM wsgate_revocations"
            ).fetchone()[0]
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        self._store._watches.add(self)

    def _poll(self) -> list[Revocation]:
        if self._conn is None:
            return []
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return []
        self._version = version
        rows = self._conn.execute(
            "SELECT id, kind, value, revoked_at, expires_at FROM wsgate_revocations"
            " WHERE id > ? ORDER BY id",
            (self._last_id,),
        ).fetchall()
        if rows:
            self._last_id = rows[-1][0]
        return [_row_to_revocation(row) for row in rows]

    def _unregister(self) -> None:
        self._store._watches.discard(self)
        self.close_connection()

    def close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
