"""The core of one App: admission, dispatch, live sessions and fan-out, composed.

Each job lives in a module of its own (:mod:`~wsgate.core.admission`,
:mod:`~wsgate.core.dispatch`, :mod:`~wsgate.core.sessions`,
:mod:`~wsgate.core.fanout`, :mod:`~wsgate.core.handshakes`); this class
builds them, owns the background work, and ends connections: on release
(events in flight are cancelled, then ``on_disconnect`` runs) and at
shutdown (every live socket is closed with ``server_shutdown``).
Transports never see it: they get its :class:`~wsgate.core.port.Port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from wsgate.codes import CloseReason
from wsgate.core.admission import Admission, Verifier
from wsgate.core.connection import Connection, ConnectionState
from wsgate.core.context import Context
from wsgate.core.dependencies import Plan
from wsgate.core.dispatch import Dispatcher
from wsgate.core.fanout import Fanout
from wsgate.core.handshakes import HandshakeSlots
from wsgate.core.port import Port
from wsgate.core.recovery import RECOVERABLE, Recovery
from wsgate.core.refresh import REFRESH_EVENT, Refresher
from wsgate.core.registry import NamespaceSpec
from wsgate.core.remote import ControlPlane, RemoteOps
from wsgate.core.resolution import Resolution, release_scope
from wsgate.core.revocation_follower import RevocationFollower
from wsgate.core.server import Server
from wsgate.core.sessions import Sessions, audit_connection
from wsgate.core.tracing import Tracing, sub_hash_key
from wsgate.errors import ConfigurationError
from wsgate.metrics import Metrics
from wsgate.security.limits import ConnectionSlots, EventRateLimiter, LocalConnectionSlots
from wsgate.security.origin import OriginPolicy
from wsgate.stores.revocation import RevocationStore

log = logging.getLogger("wsgate.runtime")

SHUTDOWN_GRACE = 5.0
"""Seconds live connections get to close after ``server_shutdown`` before they are dropped."""


class Runtime:
    """Holds the namespaces, the live connections and the security policies of one App.

    What is checked when: see docs/session-model.md. The one thing the
    transports get is :attr:`port`.
    """

    def __init__(
        self,
        registry: Mapping[str, NamespaceSpec],
        *,
        verifier: Verifier,
        origins: OriginPolicy,
        metrics: Metrics,
        allow_query_token: bool = False,
        revocations: RevocationStore | None = None,
        rate_limit: float = 50.0,
        max_message_bytes: int = 65536,
        connection_slots: ConnectionSlots | None = None,
        max_connections_per_user: int = 20,
        max_pending_handshakes: int = 1000,
        max_pending_handshakes_per_address: int = 100,
        max_rooms_per_connection: int = 100,
        connect_timeout: float = 10.0,
        leeway: float = 0.0,
        expiry_grace: float = 0.0,
        tracing: Tracing | None = None,
        control: ControlPlane | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        for spec in registry.values():
            if REFRESH_EVENT in spec.handlers:
                raise ConfigurationError(
                    f"{type(spec.gateway).__name__} subscribes {REFRESH_EVENT!r}, which is "
                    "built in (it re-verifies the token); use another event name"
                )
        self.registry = registry
        self.metrics = metrics
        self.revocations = revocations
        self.tracing = tracing if tracing is not None else Tracing(sub_key=sub_hash_key(None, None))
        self.fanout = Fanout(
            max_rooms_per_connection=max_rooms_per_connection, tracing=self.tracing
        )
        self.server = Server(self.fanout)
        self.sessions = Sessions(self.fanout, metrics, leeway=leeway, grace=expiry_grace)
        self.remote = RemoteOps(self.fanout, self.sessions, control)
        self.fanout.remote = self.remote
        self.recovery = recovery if recovery is not None else Recovery(window=0)
        if self.recovery.enabled:
            self.fanout.recovery = self.recovery
        self.rate = EventRateLimiter(rate_limit)
        self.slots: ConnectionSlots = (
            connection_slots
            if connection_slots is not None
            else LocalConnectionSlots(max_connections_per_user)
        )
        self.handshakes = HandshakeSlots(
            max_pending_handshakes, max_pending_handshakes_per_address, metrics
        )
        self.admission = Admission(
            registry,
            verifier=verifier,
            origins=origins,
            revocations=revocations,
            slots=self.slots,
            sessions=self.sessions,
            fanout=self.fanout,
            metrics=metrics,
            allow_query_token=allow_query_token,
            tracing=self.tracing,
        )
        refresher = Refresher(
            self.admission.verify_live, self.admission.check_refresh_guards, self.sessions
        )
        self.dispatcher = Dispatcher(
            registry,
            rate=self.rate,
            refresher=refresher,
            fanout=self.fanout,
            metrics=metrics,
            max_message_bytes=max_message_bytes,
            tracing=self.tracing,
        )
        self.follower = (
            RevocationFollower(revocations, self.sessions, self.fanout.connections.values)
            if revocations is not None
            else None
        )
        self._drained: asyncio.Event | None = None
        """Set when the last connection is released, while a shutdown waits for it."""
        self.port = Port(
            self,
            connect_timeout=connect_timeout,
            max_message_bytes=max_message_bytes,
        )

    def start(self) -> None:
        """Start the background work (revocation follower, bus, connection leases); idempotent.

        Also looks at which tracer provider is in force (see :mod:`wsgate.core.tracing`):
        ``Port.admit`` calls this before every admission, which then uses that answer.
        """
        self.tracing.refresh()
        if self.follower is not None:
            self.follower.ensure_started()
        if self.fanout.bus is not None:
            self.fanout.bus.start(self.fanout.deliver_locally)
        self.remote.start()
        self.slots.start()

    async def release(self, connection: Connection, reason: str) -> None:
        """The connection is gone: cancel its events, run ``on_disconnect`` once, forget it.

        Only the first call for a connection does anything (it is the one that
        takes the connection out of the registry). Events still in flight are
        cancelled and awaited first, so ``on_disconnect`` is the last thing
        the application sees of the connection; an event that itself ended
        its connection (``ctx.disconnect()``) is the one exception, since it
        cannot wait for itself.
        """
        if self.fanout.connections.get(connection.id) is not connection:
            return
        del self.fanout.connections[connection.id]
        if self._drained is not None and not self.fanout.connections:
            self._drained.set()
        connection.state = ConnectionState.CLOSING
        reason = connection.close_reason or reason
        connection.close_reason = reason
        self.sessions.disarm(connection)
        if connection.recovery_pid is not None and reason in RECOVERABLE:
            await self.recovery.save(connection, connection.recovery_pid)
        current = asyncio.current_task()
        in_flight = [task for task in connection.tasks if task is not current]
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        connection.state = ConnectionState.CLOSED
        self.rate.forget(connection.id)
        self.dispatcher.flush_flood_log(connection)
        await self.slots.release(connection.principal.sub, connection.id)
        metrics = self.metrics
        metrics.child(metrics.connections, connection.namespace, connection.transport.name).dec()
        metrics.child(metrics.disconnects, reason).inc()
        audit_connection("disconnected", connection, reason=reason)
        spec = self.registry[connection.namespace]
        ctx = Context(connection, self.fanout)
        try:
            if spec.disconnect_plan is None:
                await spec.gateway.on_disconnect(ctx, reason)
            else:
                await _planned_disconnect(spec.disconnect_plan, ctx, reason)
        except Exception:
            log.exception("on_disconnect of %s raised", connection.namespace)
        finally:
            # Connection-scoped dependencies go last: on_disconnect may still use them.
            await release_scope(connection)

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Close every live connection (:meth:`close_all`), then stop the background work."""
        await self.close_all(grace)
        await self.aclose()

    async def close_all(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Close every live connection with ``server_shutdown`` and wait for them to go.

        Transports close their sockets (1001 on ``/ws``, a Socket.IO
        DISCONNECT) and release the connections; whatever has not been
        released within ``grace`` seconds is released here.
        """
        live = list(self.fanout.connections.values())
        if live:
            log.info("shutting down: closing %d live connection(s)", len(live))
        for connection in live:
            try:
                await self.sessions.end(connection, CloseReason.SERVER_SHUTDOWN)
            except Exception:
                log.exception("closing connection %s at shutdown failed", connection.id)
        if self.fanout.connections:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
            self._drained = None
        for connection in list(self.fanout.connections.values()):
            await self.release(connection, CloseReason.SERVER_SHUTDOWN)

    async def aclose(self) -> None:
        """Stop the background work (follower, bus, leases, session tasks)."""
        if self.follower is not None:
            await self.follower.aclose()
        if self.fanout.bus is not None:
            await self.fanout.bus.aclose()
        await self.remote.aclose()
        await self.slots.aclose()
        await self.sessions.aclose()


async def _planned_disconnect(plan: Plan, ctx: Context, reason: str) -> None:
    """``on_disconnect`` with its dependencies, torn down right after it."""
    resolution = Resolution(plan.compiled, ctx)
    try:
        hook = resolution.compiled.consumers[0].call
        await hook(ctx, reason, **await resolution.arguments(0))
    except BaseException as exc:
        await resolution.close(exc)
        raise
    await resolution.close()
