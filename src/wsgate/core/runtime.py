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
from wsgate.core.registry import NamespaceSpec
from wsgate.core.server import Server
from wsgate.errors import ConnectionRefused, GatewayError, NotFound, TokenError
from wsgate.metrics import Metrics
from wsgate.principal import Principal
from wsgate.security.origin import OriginPolicy
from wsgate.security.token_source import extract_token, query_token_present
from wsgate.stores.revocation import RevocationStore, StoreUnavailable

log = logging.getLogger("wsgate.runtime")


class Verifier(Protocol):
    async def verify(
        self, token: str, *, use: Literal["access", "refresh"] = "access"
    ) -> Principal: ...


class Runtime:
    """Holds the namespaces, the live connections and the security policies of one App."""

    def __init__(
        self,
        registry: Mapping[str, NamespaceSpec],
        *,
        verifier: Verifier,
        origins: OriginPolicy,
        metrics: Metrics,
        allow_query_token: bool = False,
        revocations: RevocationStore | None = None,
    ) -> None:
        self.registry = registry
        self.verifier = verifier
        self.origins = origins
        self.metrics = metrics
        self.allow_query_token = allow_query_token
        self.revocations = revocations
        self.server = Server()

    def namespaces(self) -> list[str]:
        return list(self.registry)

    async def admit(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
        """Verify a handshake and register the connection, or raise :class:`ConnectionRefused`."""
        try:
            return await self._admit(namespace, handshake, conn_id, transport)
        except ConnectionRefused as refusal:
            reason = refusal.reason if isinstance(refusal, TokenError) else refusal.code
            self.metrics.auth_failures.labels(reason).inc()
            audit(
                "refused",
                level=logging.WARNING,
                conn_id=conn_id,
                namespace=namespace,
                transport=transport.name,
                remote=handshake.remote_addr,
                origin=handshake.origin,
                code=refusal.code,
                reason=reason,
            )
            raise

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
        principal = await self.verifier.verify(found.token, use="access")
        await self._check_not_revoked(principal)
        connection = Connection(
            id=conn_id,
            namespace=namespace,
            principal=principal,
            handshake=handshake,
            transport=transport,
        )
        ctx = Context(connection, self.server)
        await self._check_connect_guards(spec, ctx)
        self.server.connections[conn_id] = connection
        try:
            await spec.gateway.on_connect(ctx)
        except ConnectionRefused:
            self.server.connections.pop(conn_id, None)
            raise
        except Exception as exc:
            self.server.connections.pop(conn_id, None)
            raise _refusal_from(exc, spec) from None
        self.metrics.connects.labels(namespace, transport.name).inc()
        self.metrics.connections.labels(namespace, transport.name).inc()
        audit(
            "connected",
            conn_id=conn_id,
            sub=principal.sub,
            namespace=namespace,
            transport=transport.name,
            remote=handshake.remote_addr,
            origin=origin,
        )
        return connection

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
        """Run ``event`` for ``connection``: ``(ack data, failed)``; never raises."""
        spec = self.registry[connection.namespace]
        handler = spec.handlers.get(event)
        ctx = Context(connection, self.server, event)
        if handler is None:
            # Unknown names are not used as metric labels: a client could
            # otherwise grow the label set without bound.
            self.metrics.events.labels("<unknown>", "not_found").inc()
            return apply_filters(NotFound(), ctx, spec.filters), True
        started = time.perf_counter()
        reply, failed = await run_event(handler, ctx, payload)
        self.metrics.handler_seconds.labels(event).observe(time.perf_counter() - started)
        self.metrics.events.labels(event, "error" if failed else "ok").inc()
        if failed:
            status = reply.get("error", {}).get("status") if isinstance(reply, dict) else None
            self.metrics.errors.labels(str(status)).inc()
        return reply, failed

    async def release(self, connection: Connection, reason: str) -> None:
        """The connection is gone: run ``on_disconnect`` once and forget it."""
        if connection.closed:
            return
        connection.closed = True
        self.server.connections.pop(connection.id, None)
        spec = self.registry[connection.namespace]
        self.metrics.connections.labels(connection.namespace, connection.transport.name).dec()
        self.metrics.disconnects.labels(reason).inc()
        audit(
            "disconnected",
            conn_id=connection.id,
            sub=connection.principal.sub,
            namespace=connection.namespace,
            transport=connection.transport.name,
            remote=connection.handshake.remote_addr,
            reason=reason,
        )
        try:
            await spec.gateway.on_disconnect(Context(connection, self.server), reason)
        except Exception:
            log.exception("on_disconnect of %s raised", connection.namespace)


def _refusal_from(exc: Exception, spec: NamespaceSpec) -> ConnectionRefused:
    """An exception from ``on_connect`` refuses the connection; it never crashes the server."""
    if isinstance(exc, GatewayError) and exc.status in (401, 403):
        return ConnectionRefused("unauthorized" if exc.status == 401 else "forbidden", exc.message)
    log.error("on_connect of %s raised; refusing the connection", spec.namespace, exc_info=exc)
    return ConnectionRefused("forbidden", "Connection refused")
