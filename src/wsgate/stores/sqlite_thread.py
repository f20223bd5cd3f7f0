"""The plumbing every SQLite-backed store shares: one thread, one connection on it.

The revocation store, the user store and the refresh family store each keep
their rows in a SQLite file and did the same four things by hand: run the
blocking sqlite3 calls on a dedicated thread, open (and create the tables
of) one connection there on first use, turn any SQLite failure into
:class:`StoreUnavailable` so callers fail closed, and close the connection
before letting the thread go. :class:`SqliteThreadStore` is that once, so
the rules (busy timeout, WAL, error mapping, closing order) cannot drift
apart between the three.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, ParamSpec, TypeVar

from wsgate.stores.revocation import StoreUnavailable

log = logging.getLogger("wsgate.stores")

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 5.0


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


class SqliteThreadStore:
    """A store whose rows live in one SQLite file, used from one :class:`SqliteThread`.

    A subclass sets three class attributes: ``_thread_name`` (its thread's
    name), ``_what`` (the store's name in errors and logs: "the user store is
    closed", "SQLite user store <path> failed: ...") and ``_schema`` (the SQL
    script that creates its tables, run when the connection is first opened).
    One that holds more connections extends :meth:`_close`.
    """

    _thread_name: ClassVar[str]
    _what: ClassVar[str]
    _schema: ClassVar[str]

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._thread = SqliteThread(self._thread_name)
        self._conn: sqlite3.Connection | None = None  # used on self._thread only
        self._closed = False

    async def aclose(self) -> None:
        """Close the database; the store is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._thread.run(self._close)
        finally:
            self._thread.shutdown()

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the store thread; any SQLite failure becomes :class:`StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable(f"the {self._what} is closed")
        try:
            return await self._thread.run(fn, *args, **kwargs)
        except sqlite3.Error as exc:
            log.error("SQLite %s %s failed: %s", self._what, self._path, exc)
            raise StoreUnavailable(f"the SQLite {self._what} cannot answer") from exc

    # Everything below runs on the store thread.

    def _db(self) -> sqlite3.Connection:
        """The store's connection, opened and its tables created on first use."""
        if self._conn is None:
            conn = connect(self._path, self._busy_timeout)
            try:
                conn.executescript(self._schema)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
