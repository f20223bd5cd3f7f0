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
from wsgate.core.pipeline import check_roles, judge, run_guards
from wsgate.core.registry import NamespaceSpec
from wsgate.core.resolution import Resolution, release_scope
from wsgate.core.sessions import Sessions, audit_connection
from wsgate.core.tracing import Tracing, refusal_status, set_outcome
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
        tracing: Tracing,
    ) -> None:
        self.tracing = tracing
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

        Every refusal is counted and audited here, once. With tracing on, in
        a ``wsgate.connect`` span. Which provider is in force was looked at
        just before, by ``Runtime.start`` (``Port.admit``), once per connect,
        so that events need not; looking again here cost ~0.8% of a connect.
        """
        tracer = self.tracing.tracer
        if tracer is None:
            return await self._admit_once(namespace, handshake, conn_id, transport)
        with self.tracing.start(tracer, "wsgate.connect") as span:
            if span.is_recording():
                span.set_attribute("wsgate.namespace", namespace)
                span.set_attribute("wsgate.transport", transport.name)
            try:
                connection = await self._admit_once(namespace, handshake, conn_id, transport)
            except ConnectionRefused as refusal:
                status = refusal_status(refusal.code)
                set_outcome(span, str(refusal.code), status, error=status >= 500)
                raise
            except BaseException:
                set_outcome(span, "cancelled", error=False)
                raise
            set_outcome(span, "ok", error=False)
            return connection

    async def _admit_once(
        self, namespace: str, handshake: Handshake, conn_id: str, transport: TransportLink
    ) -> Connection:
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
        self.tracing.mark_sub(principal.sub)
        connection = Connection(
            id=conn_id,
            namespace=namespace,
            principal=principal,
            handshake=handshake,
            transport=transport,
        )
        ctx = Context(connection, self.fanout)
        plan = spec.connect_plan
        # The connect is one "event" for dependencies: the connect guards and
        # on_connect share event-scoped values, torn down once it is decided.
        resolution = Resolution(plan.compiled, ctx) if plan is not None else None
        try:
            await self._admit_checked(spec, connection, ctx, resolution)
        except BaseException as refusal:
            await _tear_down(resolution, "connect", refusal)
            # Connection-scoped values made by a guard or on_connect of a
            # connection that is not admitted after all.
            await release_scope(connection)
            raise
        await _tear_down(resolution, "connect")
        self.sessions.arm(connection)
        metrics = self.metrics
        metrics.child(metrics.connects, namespace, transport.name).inc()
        metrics.child(metrics.connections, namespace, transport.name).inc()
        audit_connection("connected", connection)
        return connection

    async def _admit_checked(
        self,
        spec: NamespaceSpec,
        connection: Connection,
        ctx: Context,
        resolution: Resolution | None,
    ) -> None:
        """Connect guards, the user's connection slot, ``on_connect``, a last revocation check."""
        principal, conn_id = connection.principal, connection.id
        await self.check_connect_guards(spec, ctx, resolution)
        try:
            taken = await self.slots.acquire(principal.sub, conn_id)
        except StoreUnavailable:
            # Counted (metrics, audit), not logged each time: the store logs
            # the outage once, however many connections it turns away.
            log.debug("connection count store unavailable; refusing the connection")
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
            await self._on_connect(spec, ctx, resolution)
            # A revocation that landed while this connect was being checked
            # (guards, slot count, on_connect) came before the connection was
            # registered, so the revocation follower could not see it: ask again.
            await self.check_not_revoked(principal)
        except BaseException:
            self.fanout.connections.pop(conn_id, None)
            await self.slots.release(principal.sub, conn_id)
            raise

    async def _on_connect(
        self, spec: NamespaceSpec, ctx: Context, resolution: Resolution | None
    ) -> None:
        """The gateway's hook; an exception from it refuses, it never crashes the server.

        Its dependencies are made first: a provider that fails is a check
        that could not be made (``unavailable``), not the hook saying no.
        """
        if resolution is None:
            hook, kwargs = spec.gateway.on_connect, {}
        else:
            last = len(resolution.compiled.consumers) - 1
            hook = resolution.compiled.consumers[last].call
            kwargs = await resolution.arguments(last)
        try:
            await hook(ctx, **kwargs)
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
            log.debug("revocation store unavailable; refusing the connection")  # as above
            raise unavailable("store_unavailable") from None
        if revoked:
            raise TokenError(Code.TOKEN_REVOKED, "Token revoked", "revoked")

    async def check_connect_guards(
        self, spec: NamespaceSpec, ctx: Context, resolution: Resolution | None = None
    ) -> None:
        """The namespace's class-level roles and guards, as a refusal on failure.

        With dependencies, ``resolution`` makes them (a provider's own
        ``GatewayError`` refuses like a guard's; any other failure propagates,
        and admission answers ``unavailable``).
        """
        try:
            check_roles(ctx, False, spec.connect_roles)
            if resolution is None:
                await run_guards(ctx, spec.connect_guards)
            else:
                consumers = resolution.compiled.consumers
                for index in range(len(spec.connect_guards)):
                    kwargs = await resolution.arguments(index)
                    await judge(ctx, consumers[index].call, kwargs)
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
        spec = self.registry[connection.namespace]
        ctx = Context(trial, self.fanout)
        plan = spec.connect_plan
        # Connection-scoped values are the live connection's, not the trial's.
        resolution = Resolution(plan.compiled, ctx, connection) if plan is not None else None
        try:
            await self.check_connect_guards(spec, ctx, resolution)
        except BaseException as refusal:
            await _tear_down(resolution, "refresh", refusal)
            raise
        await _tear_down(resolution, "refresh")


async def _tear_down(
    resolution: Resolution | None, what: str, error: BaseException | None = None
) -> None:
    """Event-scoped teardowns of a connect or refresh; a failing one is logged, not a refusal.

    By then the decision is made (and, at connect, the connection may be
    registered); undoing it because a teardown failed would leave the
    client and the server disagreeing about the session.
    """
    if resolution is None:
        return
    try:
        await resolution.close(error)
    except Exception as failure:
        if failure is not error:
            log.exception("tearing down a dependency after a %s failed", what)
