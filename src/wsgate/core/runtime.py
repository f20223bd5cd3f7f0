"""The three calls every transport makes into the core: admit, handle_event, release.

A transport turns its wire protocol into these calls and nothing else, so
the origin policy, token rules, guards, validation and error filtering are
written once and hold on every transport alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from wsgate.audit import audit
from wsgate.core.connection import Connection, TransportLink
from wsgate.core.context import Context
from wsgate.core.handshake import Handshake
from wsgate.core.pipeline import apply_filters, check_guards, run_event
from wsgate.core.refresh import REFRESH_EVENT, Refresher, unauthorized
from wsgate.core.registry import NamespaceSpec
from wsgate.core.revocation_follower import RevocationFollower
from wsgate.core.server import Server
from wsgate.core.sessions import TOKEN_EXPIRED, Sessions, audit_connection
from wsgate.errors import (
    ConfigurationError,
    ConnectionRefused,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    TokenError,
    TooManyRequests,
)
from wsgate.metrics import Metrics
from wsgate.principal import Principal
from wsgate.security.limits import LimitExceeded, Limits
from wsgate.security.origin import OriginPolicy
from wsgate.security.token_source import extract_token, query_token_present
from wsgate.stores.revocation import RevocationStore, StoreUnavailable

log = logging.getLogger("wsgate.runtime")


class Verifier(Protocol):
    async def verify(
        self, token: str, *, use: Literal["access", "refresh"] = "access"
    ) -> Principal: ...


class Runtime:
    """Holds the namespaces, the live connections and the security policies of one App.

    What is checked when (see docs/session-model.md): at admit the origin,
    the token, revocation, the connect guards and the limits on handshakes
    and connections per user; at every event the rate limit, the expiry
    grace state and the event's guards; in between, one expiry timer per
    connection and the revocation follower end sessions as they happen.
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
        limits: Limits | None = None,
        leeway: float = 0.0,
        expiry_grace: float = 0.0,
    ) -> None:
        for spec in registry.values():
            if REFRESH_EVENT in spec.handlers:
                raise ConfigurationError(
                    f"{type(spec.gateway).__name__} subscribes {REFRESH_EVENT!r}, which is "
                    "built in (it re-verifies the token); use another event name"
                )
        self.registry = registry
        self.verifier = verifier
        self.origins = origins
        self.metrics = metrics
        self.allow_query_token = allow_query_token
        self.revocations = revocations
        self.limits = limits if limits is not None else Limits()
        self.server = Server()
        self.sessions = Sessions(self.server, metrics, leeway=leeway, grace=expiry_grace)
        self.refresher = Refresher(self._verify_live, self._check_refresh_guards, self.sessions)
        self.follower = (
            RevocationFollower(revocations, self.sessions, self.server.connections.values)
            if revocations is not None
            else None
        )

    def start(self) -> None:
        """Start the background work (revocation follower, bus, connection leases); idempotent."""
        if self.follower is not None:
            self.follower.ensure_started()
        if self.server.bus is not None:
            self.server.bus.start(self.server.deliver_locally)
        self.limits.connections.start()

    async def aclose(self) -> None:
        """Stop the background work; live connections are the transports' to close."""
        if self.follower is not None:
            await self.follower.aclose()
        if self.server.bus is not None:
            await self.server.bus.aclose()
        await self.limits.connections.aclose()

    def namespaces(self) -> list[str]:
        return list(self.registry)

    async def admit(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
        """Verify a handshake and register the connection, or raise :class:`ConnectionRefused`."""
        self.start()
        gate = self.limits.handshakes
        try:
            if not gate.enter():
                self.metrics.limit_hits.labels("handshakes").inc()
                raise LimitExceeded("Server busy; try again", "max_pending_handshakes")
            self.metrics.pending_handshakes.inc()
            try:
                return await self._admit(namespace, handshake, conn_id, transport)
            finally:
                gate.leave()
                self.metrics.pending_handshakes.dec()
        except ConnectionRefused as refusal:
            reason = (
                refusal.reason if isinstance(refusal, TokenError | LimitExceeded) else refusal.code
            )
            self.record_refusal(conn_id, namespace, transport.name, handshake, refusal.code, reason)
            raise

    def record_refusal(
        self,
        conn_id: str,
        namespace: str,
        transport: str,
        handshake: Handshake,
        code: str,
        reason: str,
    ) -> None:
        """Count and audit one refused connection (also for refusals a transport makes itself)."""
        self.metrics.auth_failures.labels(reason).inc()
        audit(
            "refused",
            level=logging.WARNING,
            conn_id=conn_id,
            namespace=namespace,
            transport=transport,
            remote=handshake.remote_addr,
            origin=handshake.origin,
            code=code,
            reason=reason,
        )

    async def _admit(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
        spec = self.registry.get(namespace)
        if spec is None:
            raise ConnectionRefused("forbidden", "Unknown namespace")
        origin = handshake.origin
        # The HTTP layer already answered 403 to a bad Origin; checking again
        # here keeps a transport added later from forgetting it.
        if origin is not None and not self.origins.is_allowed(origin):
            raise ConnectionRefused("forbidden", "Origin not allowed")
        found = extract_token(
            auth=handshake.auth,
            headers=handshake.headers,
            cookies=handshake.cookies,
            query=handshake.query,
            allow_query=self.allow_query_token,
        )
        if found is None:
            why = "query_token_refused" if query_token_present(handshake.query) else "missing_token"
            raise TokenError("unauthorized", "Authentication required", why)
        principal = await self._verify_live(found.token)
        connection = Connection(
            id=conn_id,
            namespace=namespace,
            principal=principal,
            handshake=handshake,
            transport=transport,
        )
        ctx = Context(connection, self.server)
        await self._check_connect_guards(spec, ctx)
        slots = self.limits.connections
        try:
            taken = await slots.acquire(principal.sub, conn_id)
        except StoreUnavailable:
            log.error("connection count store unavailable; refusing the connection")
            raise TokenError(
                "unauthorized", "Session cannot be checked now", "store_unavailable"
            ) from None
        if not taken:
            self.metrics.limit_hits.labels("connections_per_user").inc()
            raise LimitExceeded(
                f"At most {slots.limit} connections per user", "max_connections_per_user"
            )
        self.server.connections[conn_id] = connection
        try:
            await spec.gateway.on_connect(ctx)
        except BaseException as exc:
            self.server.connections.pop(conn_id, None)
            await slots.release(principal.sub, conn_id)
            if isinstance(exc, ConnectionRefused) or not isinstance(exc, Exception):
                raise
            raise _refusal_from(exc, spec) from None
        try:
            # A revocation that landed while this connect was being checked
            # (guards, slot count, on_connect) came before the connection was
            # registered, so the revocation follower could not see it: ask again.
            await self._check_not_revoked(principal)
        except ConnectionRefused:
            self.server.connections.pop(conn_id, None)
            await slots.release(principal.sub, conn_id)
            raise
        self.sessions.arm(connection)
        metrics = self.metrics
        metrics.child(metrics.connects, namespace, transport.name).inc()
        metrics.child(metrics.connections, namespace, transport.name).inc()
        audit_connection("connected", connection)
        return connection

    async def _verify_live(self, token: str) -> Principal:
        """A token as at connect: verified, an access token, and not revoked."""
        principal = await self.verifier.verify(token, use="access")
        await self._check_not_revoked(principal)
        return principal

    async def _check_refresh_guards(self, connection: Connection, principal: Principal) -> None:
        """The namespace's connect roles and guards, judged for a refreshed principal."""
        trial = Connection(
            id=connection.id,
            namespace=connection.namespace,
            principal=principal,
            handshake=connection.handshake,
            transport=connection.transport,
            rooms=connection.rooms,
            state=connection.state,
        )
        await self._check_connect_guards(
            self.registry[connection.namespace], Context(trial, self.server)
        )

    async def _check_not_revoked(self, principal: Principal) -> None:
        """Fail closed: a store that cannot answer refuses the connection."""
        if self.revocations is None:
            return
        try:
            revoked = await self.revocations.is_revoked(
                sub=principal.sub, jti=principal.jti, issued_at=principal.issued_at
            )
        except StoreUnavailable:
            log.error("revocation store unavailable; refusing the connection")
            raise TokenError(
                "unauthorized", "Session cannot be checked now", "store_unavailable"
            ) from None
        if revoked:
            raise TokenError("token_revoked", "Token revoked", "revoked")

    async def _check_connect_guards(self, spec: NamespaceSpec, ctx: Context) -> None:
        try:
            await check_guards(ctx, False, spec.connect_roles, spec.connect_guards)
        except GatewayError as exc:
            code = "unauthorized" if exc.status == 401 else "forbidden"
            raise ConnectionRefused(code, exc.message) from None

    async def handle_event(
        self, connection: Connection, event: str, payload: Any
    ) -> tuple[Any, bool]:
        """Run ``event`` for ``connection``: ``(ack data, failed)``; never raises.

        A closing session runs nothing; then the rate limit, before any
        handler work, so a flood costs the server as little as possible; then
        the built-in ``auth:refresh``; then, during an expiry grace window,
        nothing else; then the gateway's handler.
        """
        if connection.closed or connection.ending is not None:
            # The transport may still hand over an event read before the close;
            # a closed or closing session runs nothing and keeps no state.
            return unauthorized("unauthorized", "Session is closing").to_payload(), True
        spec = self.registry[connection.namespace]
        handler = spec.handlers.get(event)
        # Unknown names are not used as metric labels: a client could
        # otherwise grow the label set without bound.
        label = event if handler is not None or event == REFRESH_EVENT else "<unknown>"
        if not self.limits.events.allow(connection.id):
            return self._limited(connection, label, "rate", TooManyRequests()), True
        connection.limited = None
        if event == REFRESH_EVENT:
            reply, failed = await self.refresher(connection, payload)
            self.metrics.refreshes.labels("refused" if failed else "ok").inc()
            return self._count(label, reply, failed), failed
        if connection.expired:
            error = unauthorized(TOKEN_EXPIRED, "Token expired; send auth:refresh")
            return self._count(label, error.to_payload(), True), True
        ctx = Context(connection, self.server, event)
        if handler is None:
            return self._count(label, apply_filters(NotFound(), ctx, spec.filters), True), True
        started = time.perf_counter()
        reply, failed = await run_event(handler, ctx, payload)
        self.metrics.observe_handler(event, time.perf_counter() - started)
        if failed and _status_of(reply) in (401, 403):
            audit_connection("denied", connection, level=logging.WARNING, event=event)
        return self._count(label, reply, failed), failed

    def reject_oversize(self, connection: Connection, size: int) -> Any:
        """The 413 error object for a message over ``max_message_bytes``.

        The transport measures the raw message before decoding it (decoding
        is the cost being avoided) and sends the answer its own way.
        """
        error = PayloadTooLarge(f"Messages are limited to {self.limits.max_message_bytes} bytes")
        return self._limited(connection, "<unknown>", "message_size", error, size=size)

    def _limited(
        self, connection: Connection, label: str, limit: str, error: GatewayError, **fields: Any
    ) -> Any:
        """Count a limit hit; audit only the first of a run, so a flood is one log line."""
        self.metrics.limit_hits.labels(limit).inc()
        if connection.limited != limit:
            connection.limited = limit
            audit_connection("limited", connection, level=logging.WARNING, limit=limit, **fields)
        return self._count(label, error.to_payload(), True)

    def _count(self, label: str, reply: Any, failed: bool) -> Any:
        """Events by name and outcome, and error replies by status."""
        if not failed:
            self.metrics.count_event(label, "ok")
            return reply
        status = _status_of(reply)
        outcome = _OUTCOMES.get(status, "error") if status is not None else "error"
        self.metrics.count_event(label, outcome)
        self.metrics.errors.labels(str(status)).inc()
        return reply

    async def release(self, connection: Connection, reason: str) -> None:
        """The connection is gone: run ``on_disconnect`` once and forget it."""
        if connection.closed:
            return
        connection.closed = True
        self.server.connections.pop(connection.id, None)
        self.sessions.disarm(connection)
        self.limits.events.forget(connection.id)
        await self.limits.connections.release(connection.principal.sub, connection.id)
        spec = self.registry[connection.namespace]
        metrics = self.metrics
        metrics.child(metrics.connections, connection.namespace, connection.transport.name).dec()
        metrics.child(metrics.disconnects, reason).inc()
        audit_connection("disconnected", connection, reason=reason)
        try:
            await spec.gateway.on_disconnect(Context(connection, self.server), reason)
        except Exception:
            log.exception("on_disconnect of %s raised", connection.namespace)


_OUTCOMES = {
    400: "invalid",
    401: "denied",
    403: "denied",
    404: "not_found",
    413: "too_large",
    429: "rate_limited",
}


def _status_of(reply: Any) -> int | None:
    error = reply.get("error") if isinstance(reply, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return status if isinstance(status, int) else None


def _refusal_from(exc: Exception, spec: NamespaceSpec) -> ConnectionRefused:
    """An exception from ``on_connect`` refuses the connection; it never crashes the server."""
    if isinstance(exc, GatewayError) and exc.status in (401, 403):
        return ConnectionRefused("unauthorized" if exc.status == 401 else "forbidden", exc.message)
    log.error("on_connect of %s raised; refusing the connection", spec.namespace, exc_info=exc)
    return ConnectionRefused("forbidden", "Connection refused")
