"""The live session: a connection lives only as long as its token does.

Each connection has at most one timer, armed at the token's ``exp`` (plus
the configured leeway) with ``loop.call_later``: asyncio keeps timers in a
heap, so 10,000 idle connections cost no wake-up until one of them is due,
and there is no loop polling every connection. Refreshing the token re-arms
the timer; closing the connection cancels it.

Ending a session is also here, because expiry and revocation end it the same
way: tell the client why (``auth:expired`` / ``auth:revoked``), then close
with a reason code (``token_expired`` / ``token_revoked``) that each
transport maps to its own wire form.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wsgate.audit import audit
from wsgate.codes import CloseReason
from wsgate.core.connection import Connection, ConnectionState
from wsgate.core.fanout import Fanout
from wsgate.metrics import Metrics

log = logging.getLogger("wsgate.sessions")

EXPIRED_EVENT = "auth:expired"
REVOKED_EVENT = "auth:revoked"
TOKEN_EXPIRED = CloseReason.TOKEN_EXPIRED
TOKEN_REVOKED = CloseReason.TOKEN_REVOKED
_NOTICES: dict[str, str] = {TOKEN_EXPIRED: EXPIRED_EVENT, TOKEN_REVOKED: REVOKED_EVENT}


def audit_connection(action: str, connection: Connection, **fields: Any) -> None:
    """One audit line about a live connection: who, from where, and why."""
    level = fields.pop("level", logging.INFO)
    audit(
        action,
        level=level,
        conn_id=connection.id,
        sub=connection.principal.sub,
        namespace=connection.namespace,
        transport=connection.transport.name,
        remote=connection.handshake.remote_addr,
        origin=connection.handshake.origin,
        **fields,
    )


class Sessions:
    """Arms expiry timers and ends sessions, for every transport alike."""

    def __init__(
        self, fanout: Fanout, metrics: Metrics, *, leeway: float = 0.0, grace: float = 0.0
    ) -> None:
        self.fanout = fanout
        self.metrics = metrics
        self.leeway = leeway
        self.grace = grace
        # Tasks started from timer callbacks: held so they are not collected mid-run.
        self._tasks: set[asyncio.Task[None]] = set()

    def deadline(self, connection: Connection) -> float | None:
        """Epoch seconds at which the connection's token stops being accepted."""
        expires_at = connection.principal.expires_at
        return None if expires_at is None else expires_at + self.leeway

    def arm(self, connection: Connection) -> None:
        """(Re)start the connection's one expiry timer from its current principal.

        A refresh during a grace window brings the connection back to ``OPEN``.
        """
        self.disarm(connection)
        if connection.state is ConnectionState.EXPIRED:
            connection.state = ConnectionState.OPEN
        deadline = self.deadline(connection)
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - time.time())
        connection.expiry_timer = loop.call_later(delay, self._on_deadline, connection)

    def disarm(self, connection: Connection) -> None:
        if connection.expiry_timer is not None:
            connection.expiry_timer.cancel()
            connection.expiry_timer = None

    def _on_deadline(self, connection: Connection) -> None:
        connection.expiry_timer = None
        if not connection.live:
            return
        if self.grace > 0 and connection.state is ConnectionState.OPEN:
            # The grace window: the client is told now and may still refresh;
            # every other event is refused until it does (see the dispatcher).
            connection.state = ConnectionState.EXPIRED
            loop = asyncio.get_running_loop()
            connection.expiry_timer = loop.call_later(self.grace, self._on_deadline, connection)
            self._spawn(self._notify_expired(connection))
            return
        self._spawn(self.end(connection, TOKEN_EXPIRED))

    async def _notify_expired(self, connection: Connection) -> None:
        audit_connection("expired", connection, reason=TOKEN_EXPIRED, grace=self.grace)
        await self.fanout.send_to(
            connection, EXPIRED_EVENT, {"reason": TOKEN_EXPIRED, "grace": self.grace}
        )

    async def end(self, connection: Connection, reason: str) -> bool:
        """Tell the client why, then close; False when it was already closing.

        ``reason`` is the close reason code; ``token_expired`` and
        ``token_revoked`` are announced first as ``auth:expired`` and
        ``auth:revoked``.
        """
        if not connection.live:
            return False
        if reason == TOKEN_EXPIRED and connection.expiry_timer is not None:
            # The timer fired, then an auth:refresh armed a new one before
            # this task ran: the new token stands.
            return False
        # After a grace window the client was already told it expired.
        already_told = reason == TOKEN_EXPIRED and connection.state is ConnectionState.EXPIRED
        connection.state = ConnectionState.CLOSING
        connection.close_reason = reason
        self.disarm(connection)
        notice = _NOTICES.get(reason)
        if notice is not None and not already_told:
            revoked = reason == TOKEN_REVOKED
            audit_connection(
                "revoked" if revoked else "expired",
                connection,
                level=logging.WARNING if revoked else logging.INFO,
                reason=reason,
            )
        self.metrics.session_ends.labels(reason).inc()
        try:
            if notice is not None and not already_told:
                await self.fanout.send_to(connection, notice, {"reason": reason}, force=True)
        except Exception:
            log.warning("could not tell %s why it is closed; closing anyway", connection.id)
        finally:
            await self.fanout.close(connection, reason)
        return True

    async def aclose(self) -> None:
        """Cancel the session tasks still running (the App is stopping)."""
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ending a session failed", exc_info=task.exception())
