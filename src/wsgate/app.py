"""``App``: one ASGI application serving the gateways and the HTTP routes beside them.

Routing and lifespan only; the parts are built from the settings by
:func:`wsgate.assembly.assemble`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wsgate.assembly import Assembly, assemble, token_issuer
from wsgate.audit import audit, ensure_logging
from wsgate.codes import CloseReason
from wsgate.core.admission import Verifier
from wsgate.core.dependencies import DependencyOverrides, name_of
from wsgate.core.gateway import Gateway
from wsgate.core.handshake import served_of
from wsgate.core.interceptors import Interceptor
from wsgate.core.registry import NamespaceSpec
from wsgate.core.server import Server
from wsgate.errors import ConfigurationError, StartupError
from wsgate.metrics import Metrics
from wsgate.schema.asyncapi import asyncapi_json
from wsgate.security.jwt import TokenIssuer
from wsgate.security.metrics_access import MetricsAccess, MetricsVerdict
from wsgate.settings import Settings
from wsgate.stores.redis_health import HealthState
from wsgate.stores.revocation import RevocationStore

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = logging.getLogger("wsgate.app")

SOCKETIO_PATH = "/socket.io"

Hook = Callable[[], Awaitable[None]]


class App:
    """An ASGI app: ``uvicorn module:app`` runs it, Starlette/FastAPI can mount it.

    Construction validates the settings: a server without a usable key, or
    with an origin list that cannot be parsed, does not start; nor does a
    gateway whose handlers, guards, interceptors or hooks cannot be planned.
    ``interceptors`` run around every event of every gateway, outermost.
    ``tracer_provider`` is the OpenTelemetry provider spans go to (default:
    the global one; spans are off while none is configured).
    """

    def __init__(
        self,
        gateways: Sequence[Gateway],
        settings: Settings | None = None,
        *,
        routes: Sequence[BaseRoute] = (),
        middleware: Sequence[Middleware] = (),
        verifier: Verifier | None = None,
        revocations: RevocationStore | None = None,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        interceptors: Sequence[Interceptor] = (),
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self._parts: Assembly = assemble(
            gateways,
            self.settings,
            verifier=verifier,
            revocations=revocations,
            interceptors=interceptors,
            tracer_provider=tracer_provider,
        )
        try:
            self._metrics_access = MetricsAccess(self.settings.metrics_token_text())
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._on_startup = tuple(on_startup)
        self._on_shutdown = tuple(on_shutdown)
        self._started: list[Gateway] = []
        self._stopped = False
        own_routes = [
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/metrics", self._metrics_endpoint, methods=["GET"]),
        ]
        if self.settings.asyncapi_path:
            # Built now, so a body or ack type that cannot be described fails at start-up.
            self._asyncapi = asyncapi_json(self)
            own_routes.append(
                Route(self.settings.asyncapi_path, self._asyncapi_endpoint, methods=["GET"])
            )
        self.http = Starlette(
            routes=[*own_routes, *routes],
            middleware=[
                Middleware(
                    _PolicyCORSMiddleware,  # type: ignore[arg-type]  # starlette's stub is too narrow
                    app_origin_allowed=self.origin_allowed,
                    allow_credentials=True,
                    allow_methods=["GET", "POST"],
                    allow_headers=["content-type", "authorization"],
                ),
                *middleware,
            ],
            lifespan=self._lifespan,
        )

    # -- what applications use -----------------------------------------------------------

    @property
    def server(self) -> Server:
        """Broadcasts to the namespace ``/`` (``.of(namespace)`` for another), on every node."""
        return self._parts.runtime.server

    @property
    def verifier(self) -> Verifier:
        """The token verifier connections are judged by."""
        return self._parts.verifier

    @property
    def namespaces(self) -> Mapping[str, NamespaceSpec]:
        """What the App serves, by namespace: events, bodies, acks, roles, pushes (read-only).

        Read by :mod:`wsgate.schema` to generate the AsyncAPI document and typed clients.
        """
        return MappingProxyType(self._parts.runtime.registry)

    @property
    def metrics(self) -> Metrics:
        return self._parts.metrics

    @property
    def dependency_overrides(self) -> DependencyOverrides:
        """``{provider: replacement}`` for tests (FastAPI's idiom); applied at once.

        Setting or deleting an entry compiles the App's dependency plans
        again (a replacement that cannot be planned raises there); events
        already running keep what they started with. ``wsgate.testing``'s
        ``AppClient(app, overrides={...})`` sets them for one client's life.
        """
        return self._parts.injector.overrides

    @property
    def revocations(self) -> RevocationStore | None:
        """The revocation store (given, or Redis when ``redis_url`` is set), if any."""
        return self._parts.revocations

    def origin_allowed(self, origin: str | None, scope: Scope) -> bool:
        """The origin policy: the configured origins, else the origin ``scope`` reached."""
        return self._parts.origins.is_allowed(origin, served=served_of(scope))

    def describe_origins(self) -> str:
        """The allowed origins, for messages and logs."""
        origins = self._parts.origins
        if origins.follows_served_origin:
            return (
                "the origin each request reached (" + ", ".join(self.settings.own_origins()) + ")"
            )
        return ", ".join(origins.allowed)

    def token_issuer(self) -> TokenIssuer:
        """Signs tokens with this App's key and claims (HMAC secret or private key)."""
        return token_issuer(self.settings)

    async def disconnect_token(self, jti: str, reason: str = CloseReason.TOKEN_REVOKED) -> int:
        """Close every live connection on this node that holds the token ``jti``.

        ``await app.server.disconnect_token(jti)`` does it on every node and
        says which nodes did not answer (see docs/remote-operations.md).

        The revocation follower would do it too once the store announces the
        revocation; calling this right after revoking makes it immediate here.
        Each client gets ``auth:revoked`` (or ``auth:expired``) before the close.
        """
        runtime = self._parts.runtime
        doomed = [c for c in runtime.fanout.connections.values() if c.principal.jti == jti]
        closed = 0
        for connection in doomed:
            if await runtime.sessions.end(connection, reason):
                closed += 1
        return closed

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = _route_path(scope)
            if path == SOCKETIO_PATH or path.startswith(SOCKETIO_PATH + "/"):
                if not self._origin_acceptable(scope):
                    await self._deny(scope, receive, send)
                    return
                if path != scope["path"]:
                    scope = {**scope, "path": path}
                await self._parts.socketio.asgi(scope, receive, send)
                return
            if scope["type"] == "websocket" and path == self.settings.ws_path:
                # The same origin rule as Socket.IO, before the socket is accepted.
                if not self._origin_acceptable(scope):
                    await self._deny(scope, receive, send)
                    return
                await self._parts.websocket(scope, receive, send)
                return
        await self.http(scope, receive, send)

    def _origin_acceptable(self, scope: Scope) -> bool:
        """A present Origin must be allowed; a missing one is judged by the token later."""
        origin = _origin_of(scope)
        return origin is None or self.origin_allowed(origin, scope)

    async def _deny(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP 403 before any Engine.IO handling, for polling and websocket alike."""
        client = scope.get("client")
        audit(
            "refused",
            level=logging.WARNING,
            transport="socketio" if _route_path(scope).startswith(SOCKETIO_PATH) else "websocket",
            remote=client[0] if client else None,
            origin=_origin_of(scope),
            code="forbidden",
            reason="origin_not_allowed",
            allowed=self.describe_origins(),
        )
        self.metrics.auth_failures.labels("origin_not_allowed").inc()
        if scope["type"] == "websocket":
            # Closing before accept makes the ASGI server answer the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        response = PlainTextResponse("Origin not allowed", status_code=403)
        await response(scope, receive, send)

    async def ready(self) -> list[str]:
        """The shared stores that cannot answer now (empty: ready to take traffic).

        ``/readyz`` answers 503 with this list; ``/healthz`` (liveness) never
        looks at stores, so an orchestrator stops routing to the node while
        Redis is away instead of restarting it.
        """
        failing: list[str] = []
        redis = self._parts.redis
        if redis is not None:
            redis.start()
            state = redis.health.state
            if state is HealthState.UNKNOWN:
                # Not probed yet: look now (bounded by redis_timeout).
                state = HealthState.UP if await redis.health.probe() else HealthState.DOWN
            if state is HealthState.DOWN:
                failing.append("redis")
        return failing

    async def _readyz(self, request: Request) -> Response:
        failing = await self.ready()
        if failing:
            return JSONResponse({"status": "unavailable", "failing": failing}, 503)
        return JSONResponse({"status": "ok"})

    async def _metrics_endpoint(self, request: Request) -> Response:
        """Prometheus text, to a bearer of ``metrics_token`` or else to loopback clients only."""
        verdict = self._metrics_access.judge(
            request.client.host if request.client else None, request.scope.get("headers") or ()
        )
        if verdict is MetricsVerdict.TOKEN_MISSING:
            return JSONResponse(
                {
                    "error": {
                        "status": 401,
                        "code": "unauthorized",
                        "message": "Metrics need a token",
                    }
                },
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        if verdict is MetricsVerdict.NOT_LOOPBACK:
            return JSONResponse(
                {
                    "error": {
                        "status": 403,
                        "code": "forbidden",
                        "message": "Metrics are served to loopback clients only",
                    }
                },
                403,
            )
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def _asyncapi_endpoint(self, request: Request) -> Response:
        """The AsyncAPI document of the gateways (``asyncapi_path``; off by default)."""
        return Response(self._asyncapi, media_type="application/json")

    # -- lifespan ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.lifespan():
            yield

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Start and stop what the App owns; call it from a host app's lifespan when mounted.

        At start: wsgate's loggers get a handler if the host configured none,
        the background work starts, the ``on_startup`` hooks run in order,
        then each gateway's ``on_start`` in the order given. A hook that
        raises stops the start-up with a :class:`~wsgate.StartupError`
        naming it: the gateways already started are stopped (reverse order)
        and the background work ends; ``on_shutdown`` hooks do not run,
        since the start-up they undo may not have happened.

        At stop: every live connection is closed with ``server_shutdown``
        (1001 on ``/ws``; ``on_disconnect`` runs, connection-scoped
        dependencies are torn down), each started gateway's ``on_stop`` runs
        in reverse order, background work is awaited, then the
        ``on_shutdown`` hooks run in order. Without the lifespan (a host that
        never runs it) the background work still starts on the first
        connection, and no start/stop hook runs.
        """
        ensure_logging(self.settings.log_level, self.settings.log_format)
        self._stopped = False
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    async def startup(self) -> None:
        """Start background work, then run ``on_startup`` hooks and each gateway's ``on_start``."""
        self._parts.runtime.start()
        self._started = []
        try:
            for hook in self._on_startup:
                await _start_step(hook, f"on_startup hook {name_of(hook)}")
            for gateway in self._parts.gateways:
                await _start_step(gateway.on_start, f"{type(gateway).__name__}.on_start")
                self._started.append(gateway)
        except StartupError:
            self._stopped = True
            await self._stop_gateways()
            await self._parts.runtime.aclose()
            await self._close_parts()
            raise

    async def close_connections(self) -> None:
        """Close every live connection with ``server_shutdown`` and wait (bounded) for them."""
        await self._parts.runtime.close_all()

    async def aclose(self) -> None:
        """Close live connections, stop background work, then run the ``on_shutdown`` hooks."""
        if self._stopped:
            return
        self._stopped = True
        runtime = self._parts.runtime
        await runtime.close_all()
        await self._stop_gateways()
        await runtime.aclose()
        for callback in self._on_shutdown:
            try:
                await callback()
            except Exception:
                log.exception("an on_shutdown callback failed")
        await self._close_parts()

    async def _close_parts(self) -> None:
        for closer in self._parts.closers:
            try:
                await closer()
            except Exception:
                log.exception("closing an App resource failed")

    async def _stop_gateways(self) -> None:
        """``on_stop`` of every started gateway, newest first; a failure is logged."""
        started, self._started = self._started, []
        for gateway in reversed(started):
            try:
                await gateway.on_stop()
            except Exception:
                log.exception("%s.on_stop failed", type(gateway).__name__)

    # -- internals tests may look at -------------------------------------------------------

    @property
    def runtime(self) -> Any:
        """The core (internal; for tests and diagnostics)."""
        return self._parts.runtime

    @property
    def parts(self) -> Assembly:
        """What the App was built from (internal; for tests and diagnostics)."""
        return self._parts


def apps_within(asgi: Any, depth: int = 8) -> list[App]:
    """The wsgate Apps inside an ASGI app: itself, behind middleware, or mounted (Starlette).

    Follows ``.app`` (middleware), ``.middleware_stack`` and ``.routes``
    (Starlette, FastAPI, Mount) a few levels deep, so ``wsgate serve`` finds
    an App mounted in a FastAPI app and closes its sockets first at shutdown.
    """
    found: list[App] = []
    seen: set[int] = set()

    def visit(node: Any, level: int) -> None:
        if node is None or level > depth or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, App):
            found.append(node)
            return
        for attribute in ("app", "middleware_stack", "router"):
            visit(getattr(node, attribute, None), level + 1)
        for route in getattr(node, "routes", None) or ():
            visit(getattr(route, "app", None), level + 1)

    visit(asgi, 0)
    return found


_REQUEST_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "wsgate_request_scope", default=None
)


class _PolicyCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, judged by the same origin policy as the sockets."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        app_origin_allowed: Callable[[str | None, Scope], bool],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, allow_origins=(), **kwargs)
        self._origin_allowed = app_origin_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _REQUEST_SCOPE.set(scope)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _REQUEST_SCOPE.reset(token)

    def is_allowed_origin(self, origin: str) -> bool:
        return self._origin_allowed(origin, _REQUEST_SCOPE.get() or {})


async def _start_step(hook: Callable[[], Awaitable[None]], what: str) -> None:
    """Run one start-up hook; its failure becomes a :class:`StartupError` that names it."""
    try:
        await hook()
    except Exception as exc:
        # The exception itself goes with the StartupError (its cause) to the
        # server's report; this line says which hook, in wsgate's log.
        log.error("start-up stopped: %s failed", what)
        raise StartupError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _origin_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"origin":
            text: str = value.decode("latin-1")
            return text
    return None


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and sets root_path)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
