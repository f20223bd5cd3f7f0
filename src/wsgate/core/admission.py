"""Admission: everything a handshake must pass before it becomes a connection.

In order: the namespace exists; the origin is allowed; a token is present
in the first source the client used, verifies as an *access* token and is
not revoked; the namespace's connect roles and guards say yes; the user has
a connection slot left; ``on_connect`` does not raise; and, once more, the
token was not revoked while all that ran. The first failure refuses the
handshake with a :class:`~wsgate.errors.ConnectionRefused` whose code tells
the client what to do; a check that cannot be made now (a store or Redis
down, an unexpected error) refuses with ``unavailable``: fail closed, but
never tell a client with a good token to throw it away.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal, Protocol

from wsgate.audit import audit
from wsgate.codes import Code
from wsgate.core.connection import Connection, TransportLink
from wsgate.core.context import Context
from wsgate.core.fanout import Fanout
from wsgate.core.handshake import Handshake
from wsgate.core.pipeline import check_roles, run_guards
from wsgate.core.registry import NamespaceSpec
from wsgate.core.sessions import Sessions, audit_connection
from wsgate.errors import ConnectionRefused, GatewayError, TokenError
from wsgate.metrics import Metrics
from wsgate.principal import Principal
from wsgate.security.limits import ConnectionSlots
from wsgate.security.origin import OriginPolicy
from wsgate.security.token_source import extract_token, query_token_present
from wsgate.stores.revocation import RevocationStore, StoreUnavailable

log = logging.getLogger("wsgate.admission")


class Verifier(Protocol):
    """Verifies a token into a :class:`~wsgate.Principal`, or raises :class:`~wsgate.TokenError`.

    wsgate's own is built from the JWT settings; pass another to ``App`` to
    verify tokens your own way (it must check the signature, expiry and use).
    """

    async def verify(
        self, token: str, *, use: Literal["access", "refresh"] = "access"
    ) -> Principal: ...


def unavailable(reason: str) -> ConnectionRefused:
    """The refusal for a check that cannot be made now: the client should retry."""
    return ConnectionRefused(Code.UNAVAILABLE, "Session cannot be checked now; try again", reason)


class Admission:
    """Turns a handshake into a registered :class:`Connection`, or refuses it."""

    def __init__(
        self,
        registry: Mapping[str, NamespaceSpec],
        *,
        verifier: Verifier,
        origins: OriginPolicy,
        revocations: RevocationStore | None,
        slots: ConnectionSlots,
        sessions: Sessions,
        fanout: Fanout,
        metrics: Metrics,
        allow_query_token: bool,
    ) -> None:
        self.registry = registry
        self.verifier = verifier
        self.origins = origins
        self.revocations = revocations
        self.slots = slots
        self.sessions = sessions
        self.fanout = fanout
        self.metrics = metrics
        self.allow_query_token = allow_query_token

    def token_in_handshake(self, handshake: Handshake) -> bool:
        """True when the HTTP request itself carries a token source (header, cookie, query).

        A malformed source counts as present: the first source present is the
        one judged, and admission refuses it.
        """
        try:
            found = extract_token(
                auth=None,
                headers=handshake.headers,
                cookies=handshake.cookies,
                query=handshake.query,
                allow_query=self.allow_query_token,
            )
        except TokenError:
            return True
        return found is not None

    async def admit(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
        """Verify a handshake and register the connection, or raise :class:`ConnectionRefused`.

        Every refusal is counted and audited here, once.
        """
        try:
            return await self._admit(namespace, handshake, conn_id, transport)
        except ConnectionRefused as refusal:
            self.record_refusal(conn_id, namespace, transport.name, handshake, refusal)
            raise
        except Exception:
            # A bug (a custom verifier, a store raising something unexpected)
            # must neither crash the transport nor leave the client hanging.
            log.exception("admitting a connection failed; refusing it")
            failure = unavailable("internal_error")
            self.record_refusal(conn_id, namespace, transport.name, handshake, failure)
            raise failure from None

    def record_refusal(
        self,
        conn_id: str,
        namespace: str,
        transport: str,
        handshake: Handshake,
        refusal: ConnectionRefused,
    ) -> None:
        """Count and audit one refused connection (also for refusals a transport makes itself)."""
        self.metrics.auth_failures.labels(refusal.reason).inc()
        audit(
            "refused",
            level=logging.WARNING,
            conn_id=conn_id,
            namespace=namespace,
            transport=transport,
            remote=handshake.remote_addr,
            origin=handshake.origin,
            code=str(refusal.code),
            reason=refusal.reason,
        )

    async def _admit(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
        spec = self.registry.get(namespace)
        if spec is None:
            raise ConnectionRefused(Code.FORBIDDEN, "Unknown namespace", "unknown_namespace")
        origin = handshake.origin
        # The HTTP layer already answered 403 to a bad Origin; checking again
        # here keeps a transport added later from forgetting it.
        if origin is not None and not self.origins.is_allowed(origin, served=handshake.served):
            raise ConnectionRefused(Code.FORBIDDEN, "Origin not allowed", "origin_not_allowed")
        found = extract_token(
            auth=handshake.auth,
            headers=handshake.headers,
            cookies=handshake.cookies,
            query=handshake.query,
            allow_query=self.allow_query_token,
        )
        if found is None:
            why = "query_token_refused" if query_token_present(handshake.query) else "missing_token"
            raise TokenError(Code.UNAUTHORIZED, "Authentication required", why)
        principal = await self.verify_live(found.token)
        connection = Connection(
            id=conn_id,
            namespace=namespace,
            principal=principal,
            handshake=handshake,
            transport=transport,
        )
        await self.check_connect_guards(spec, Context(connection, self.fanout))
        try:
            taken = await self.slots.acquire(principal.sub, conn_id)
        except StoreUnavailable:
            log.error("connection count store unavailable; refusing the connection")
            raise unavailable("store_unavailable") from None
        if not taken:
            self.metrics.limit_hits.labels("connections_per_user").inc()
            raise ConnectionRefused(
                Code.TOO_MANY_CONNECTIONS,
                f"At most {self.slots.limit} connections per user",
                "max_connections_per_user",
            )
        self.fanout.connections[conn_id] = connection
        try:
            await self._on_connect(spec, connection)
            # A revocation that landed while this connect was being checked
            # (guards, slot count, on_connect) came before the connection was
            # registered, so the revocation follower could not see it: ask again.
            await self.check_not_revoked(principal)
        except BaseException:
            self.fanout.connections.pop(conn_id, None)
            await self.slots.release(principal.sub, conn_id)
            raise
        self.sessions.arm(connection)
        metrics = self.metrics
        metrics.child(metrics.connects, namespace, transport.name).inc()
        metrics.child(metrics.connections, namespace, transport.name).inc()
        audit_connection("connected", connection)
        return connection

    async def _on_connect(self, spec: NamespaceSpec, connection: Connection) -> None:
        """The gateway's hook; an exception from it refuses, it never crashes the server."""
        try:
            await spec.gateway.on_connect(Context(connection, self.fanout))
        except ConnectionRefused:
            raise
        except GatewayError as exc:
            if exc.status == 401:
                raise ConnectionRefused(Code.UNAUTHORIZED, exc.message, "on_connect") from None
            if exc.status == 403:
                raise ConnectionRefused(Code.FORBIDDEN, exc.message, "on_connect") from None
            if exc.status == 503:
                raise ConnectionRefused(Code.UNAVAILABLE, exc.message, "on_connect") from None
            log.error("on_connect of %s raised a %d; refusing", spec.namespace, exc.status)
            raise ConnectionRefused(Code.FORBIDDEN, "Connection refused", "on_connect") from None
        except Exception:
            log.exception("on_connect of %s raised; refusing the connection", spec.namespace)
            raise ConnectionRefused(Code.FORBIDDEN, "Connection refused", "on_connect") from None

    async def verify_live(self, token: str) -> Principal:
        """A token as at connect: verified, an access token, and not revoked."""
        principal = await self.verifier.verify(token, use="access")
        await self.check_not_revoked(principal)
        return principal

    async def check_not_revoked(self, principal: Principal) -> None:
        """Fail closed: a store that cannot answer refuses (``unavailable``)."""
        if self.revocations is None:
            return
        try:
            revoked = await self.revocations.is_revoked(
                sub=principal.sub, jti=principal.jti, issued_at=principal.issued_at
            )
        except StoreUnavailable:
            log.error("revocation store unavailable; refusing the connection")
            raise unavailable("store_unavailable") from None
        if revoked:
            raise TokenError(Code.TOKEN_REVOKED, "Token revoked", "revoked")

    async def check_connect_guards(self, spec: NamespaceSpec, ctx: Context) -> None:
        """The namespace's class-level roles and guards, as a refusal on failure."""
        try:
            check_roles(ctx, False, spec.connect_roles)
            await run_guards(ctx, spec.connect_guards)
        except GatewayError as exc:
            if exc.status == 401:
                code = Code.UNAUTHORIZED
            elif exc.status == 503:
                code = Code.UNAVAILABLE
            else:
                code = Code.FORBIDDEN
            raise ConnectionRefused(code, exc.message, "connect_guard") from None

    async def check_refresh_guards(self, connection: Connection, principal: Principal) -> None:
        """The namespace's connect roles and guards, judged for a refreshed principal."""
        trial = Connection(
            id=connection.id,
            namespace=connection.namespace,
            principal=principal,
            handshake=connection.handshake,
            transport=connection.transport,
            rooms=connection.rooms,
            user_state=connection.user_state,
        )
        await self.check_connect_guards(
            self.registry[connection.namespace], Context(trial, self.fanout)
        )
