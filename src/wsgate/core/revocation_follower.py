"""Follows the revocation store and cuts live connections whose token was revoked.

The store announces revocations through :meth:`RevocationStore.watch` (the
SQLite store notices another process's write within its poll interval, 0.25 s
by default; Redis by pub/sub; memory at once), so a revocation made anywhere
(``POST /auth/logout``, ``wsgate revoke``, another node) reaches this node's
sockets within about a second, without any loop over the connections.

When the watch fails (:class:`StoreUnavailable`), revocations may have been
missed: the follower starts a new watch with backoff and then asks the store
about every live connection. Live connections are not cut merely because
the store is down (new ones are refused at admit until it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable

from wsgate.core.connection import Connection
from wsgate.core.sessions import TOKEN_REVOKED, Sessions
from wsgate.stores.revocation import Revocation, RevocationStore, StoreUnavailable

log = logging.getLogger("wsgate.revocations")

PURGE_INTERVAL = 600.0
"""Seconds between purges of expired revocation entries."""

RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
"""Backoff between watch restarts, each with jitter (x0.5-1); the last delay repeats.

Capped at 1 s so that revocation follows again within about a second of
the store returning; a store that knows it is down fails each attempt at
once, so the short cap costs nothing during a long outage.
"""


class RevocationFollower:
    """Two background tasks: one follows the watch, one purges expired entries."""

    def __init__(
        self,
        store: RevocationStore,
        sessions: Sessions,
        connections: Callable[[], Iterable[Connection]],
        *,
        purge_interval: float = PURGE_INTERVAL,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self._connections = connections
        self.purge_interval = purge_interval
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True when the tasks run on the current event loop."""
        if not self._tasks or any(task.done() for task in self._tasks):
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return all(task.get_loop() is loop for task in self._tasks)

    def ensure_started(self) -> None:
        """Start the tasks unless they already run on this loop (idempotent, cheap).

        Called from the App's lifespan and again on every admit, because an
        App mounted in another ASGI app may never see its own lifespan.
        """
        if self.running:
            return
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(), name="wsgate-revocation-watch"),
            loop.create_task(self._purge_periodically(), name="wsgate-revocation-purge"),
        ]

    async def aclose(self) -> None:
        """Stop both tasks; the store itself belongs to whoever created it.

        A later :meth:`ensure_started` starts them again (an App served twice).
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def apply(self, revocation: Revocation) -> int:
        """Close every live connection ``revocation`` concerns; returns how many."""
        doomed = [
            conn
            for conn in list(self._connections())
            if revocation.concerns(
                sub=conn.principal.sub, jti=conn.principal.jti, issued_at=conn.principal.issued_at
            )
        ]
        closed = 0
        for connection in doomed:
            if await self.sessions.end(connection, TOKEN_REVOKED):
                closed += 1
        return closed

    async def recheck(self) -> int:
        """Ask the store about every live connection (after a watch may have missed some)."""
        closed = 0
        for connection in list(self._connections()):
            principal = connection.principal
            if await self.store.is_revoked(
                sub=principal.sub, jti=principal.jti, issued_at=principal.issued_at
            ) and await self.sessions.end(connection, TOKEN_REVOKED):
                closed += 1
        return closed

    async def _follow(self) -> None:
        failures = 0
        # Re-check on the first subscription too: a revocation made between an
        # admit's own check and this watch starting must not slip through.
        missed = True
        while True:
            try:
                async with self.store.watch() as watch:
                    if missed:
                        # Subscribed again: anything revoked while blind is in the store.
                        closed = await self.recheck()
                        if failures and closed:
                            log.info("revocation watch restarted; %d connection(s) cut", closed)
                        missed = False
                    failures = 0
                    async for revocation in watch:
                        await self.apply(revocation)
                return  # the store was closed: nothing more will come
            except StoreUnavailable:
                missed = True
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                if failures == 1:
                    # One line per outage; the store logs the outage itself.
                    log.warning("revocation watch lost; retrying every %.2f s at most", delay)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311
            except Exception:
                missed = True
                log.exception("revocation watch crashed; restarting")
                await asyncio.sleep(RETRY_DELAYS[-1])

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval)
            try:
                purged = await self.store.purge_expired()
            except StoreUnavailable:
                log.warning("could not purge expired revocations; will retry")
                continue
            if purged:
                log.info("purged %d expired revocation(s)", purged)
