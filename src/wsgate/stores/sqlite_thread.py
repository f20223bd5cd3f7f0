"""The thread and the connections that every SQLite-backed store uses.

The revocation store, the user store and the refresh family store all keep
their rows in a SQLite file; this is what they share, apart from any one of
them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

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
